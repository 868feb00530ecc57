"""The Kafka lag exporter of the local stack: ``python -m kit.events.lag`` as a child process.

One exporter per stack, next to the broker: it reads every consumer group's committed
offsets and the partitions' end offsets from the broker and serves them on its metrics
port (``webook_kafka_group_lag``...; docs/events.md, "Lag"), whether or not the consumers
run. Its log is ``lag-exporter.log``, so :mod:`devstack.scrape_targets` finds its metrics
port under the job ``lag-exporter``, the name the Kubernetes manifests give it too. Ready
when ``/metrics`` answers; the broker need not be up, the exporter retries by itself.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.infra import ManagedProcess
from devstack.suite import http_ok

NAME = "lag-exporter"
ENV_PREFIX = "WEBOOK_LAGEXPORTER_"


def lag_exporter_env(
    kafka_bootstrap: str,
    metrics_port: int,
    *,
    mode: str = "dev",
    interval_seconds: float = 5.0,
    group_prefixes: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The exporter's environment: the launcher's own ``WEBOOK_*`` variables left out, the
    stack's broker and port, then ``overrides`` (``WEBOOK_LAGEXPORTER_*`` of the developer)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(
        {
            f"{ENV_PREFIX}MODE": mode,
            f"{ENV_PREFIX}KAFKA_BOOTSTRAP": kafka_bootstrap,
            f"{ENV_PREFIX}METRICS_HOST": "127.0.0.1",
            f"{ENV_PREFIX}METRICS_PORT": str(metrics_port),
            f"{ENV_PREFIX}INTERVAL_SECONDS": str(interval_seconds),
            f"{ENV_PREFIX}GROUP_PREFIXES": json.dumps(list(group_prefixes)),
        }
    )
    env.update(overrides or {})
    # The readiness check dials this port: an override must not move it.
    env[f"{ENV_PREFIX}METRICS_PORT"] = str(metrics_port)
    return env


def lag_exporter_process(
    kafka_bootstrap: str,
    metrics_port: int,
    log_dir: Path,
    *,
    mode: str = "dev",
    interval_seconds: float = 5.0,
    group_prefixes: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """The exporter for the broker at ``kafka_bootstrap``, metrics on ``127.0.0.1:metrics_port``.

    ``group_prefixes``: watch only these groups (all when empty); ``overrides``: settings
    applied last (any ``WEBOOK_LAGEXPORTER_*`` but the metrics port).
    """
    env = lag_exporter_env(
        kafka_bootstrap,
        metrics_port,
        mode=mode,
        interval_seconds=interval_seconds,
        group_prefixes=group_prefixes,
        overrides=overrides,
    )
    return ManagedProcess(
        NAME,
        [sys.executable, "-m", "kit.events.lag"],
        log_dir / f"{NAME}.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{metrics_port}/metrics"),
        env=env,
    )
