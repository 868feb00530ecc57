"""Migration metrics, one set per process.

- ``webook_migrator_mode{migration}``: the mode as its step, 0 ``source_only`` to 3
  ``destination_only``;
- ``webook_migrator_second_write_failures_total{table,side}``: double writes whose second
  side failed (the caller succeeded; the validator finds the row);
- ``webook_migrator_rows_checked_total{table,direction,validation}``: base-side and
  target-side rows the validator compared;
- ``webook_migrator_differences_total{table,direction,kind}``: differences found and
  published (``missing``, ``different``, ``extra``);
- ``webook_migrator_throttled_seconds_total{table,reason}``: time the validator waited for
  its rows/second budget (``budget``) or because the base side was slow (``latency``);
- ``webook_migrator_checkpoint_age_seconds{table,direction,validation}``: seconds since the
  validator last moved its checkpoint (computed when read): a stuck validator grows it;
- ``webook_migrator_validator_lag_seconds{table,direction}``: how far behind now the
  incremental validator's checkpoint is (the update time it reached);
- ``webook_migrator_fixes_total{table,outcome}``: difference events the fixer handled:
  ``upserted``, ``deleted``, ``skipped`` (a bad message), ``failed`` (gave up; the next
  validation finds the row again).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MODE = Gauge(
    "webook_migrator_mode",
    "Double-write mode of a migration: 0 source_only, 1 source_first, 2 destination_first, "
    "3 destination_only.",
    ["migration"],
)
SECOND_WRITE_FAILURES = Counter(
    "webook_migrator_second_write_failures_total",
    "Double writes whose second side failed after the first committed (left to the validator).",
    ["table", "side"],
)
ROWS_CHECKED = Counter(
    "webook_migrator_rows_checked_total",
    "Rows the validator compared between the two sides.",
    ["table", "direction", "validation"],
)
DIFFERENCES = Counter(
    "webook_migrator_differences_total",
    "Differences the validator found and published, by kind.",
    ["table", "direction", "kind"],
)
THROTTLED = Counter(
    "webook_migrator_throttled_seconds_total",
    "Seconds the validator waited: for its rows/second budget, or because the base was slow.",
    ["table", "reason"],
)
CHECKPOINT_AGE = Gauge(
    "webook_migrator_checkpoint_age_seconds",
    "Seconds since the validator last advanced its checkpoint.",
    ["table", "direction", "validation"],
)
VALIDATOR_LAG = Gauge(
    "webook_migrator_validator_lag_seconds",
    "Now minus the update time the incremental validator has checked up to.",
    ["table", "direction"],
)
FIXES = Counter(
    "webook_migrator_fixes_total",
    "Difference events the fixer handled, by outcome.",
    ["table", "outcome"],
)
