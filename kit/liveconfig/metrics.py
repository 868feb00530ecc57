"""Metrics of live settings, one set per process (labelled by service).

- ``webook_config_version{service}``: the etcd revision of the applied remote settings
  (0: none applied); every process of a service at or past a change's revision has it, which
  is what a convergence panel compares;
- ``webook_config_applied_timestamp_seconds{service}``: when remote settings were last applied;
- ``webook_config_valid{service}``: 1 while the latest remote settings seen were applied, 0
  while they are invalid (the last good ones stay in force);
- ``webook_config_apply_failures_total{service}``: remote settings refused as invalid;
- ``webook_config_ignored_keys_total{service}``: keys found in etcd that are not live
  settings of the process (unknown, or restart-only), ignored.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

VERSION = Gauge(
    "webook_config_version",
    "etcd revision of the remote settings this process applied (0: none).",
    ["service"],
)
APPLIED_AT = Gauge(
    "webook_config_applied_timestamp_seconds",
    "Unix time the remote settings were last applied.",
    ["service"],
)
VALID = Gauge(
    "webook_config_valid",
    "1 if the latest remote settings seen were applied, 0 while they are invalid.",
    ["service"],
)
APPLY_FAILURES = Counter(
    "webook_config_apply_failures_total",
    "Remote settings refused as invalid (the last good ones stay in force).",
    ["service"],
)
IGNORED_KEYS = Counter(
    "webook_config_ignored_keys_total",
    "Keys in etcd that are not live settings of the process, ignored.",
    ["service"],
)
