"""Live settings: time from a change in etcd until every process of the stack applied it.

Run ``python -m bench.config_propagation``. In a temporary directory it starts the whole
local stack (:func:`bench._workload.running_stack`: etcd with authentication on, the
broker, Redis, every service and the gateway, each process logged in to etcd as itself and
allowed to read only its own settings). Then, ``CHANGES`` times, the configuration operator
(the ``config-operator`` etcd user, as ``webookctl config set`` writes) sets ``KEY`` of
every process's service at once — one change per service, alternating ``VALUES``, a
harmless live setting every process has — and the bench polls the ``/metrics`` of every
process until each shows ``webook_config_version`` at or past the etcd revision of its
service's change (:attr:`kit.liveconfig.ChangeRecord.revision`).

A change's propagation time runs from the moment the writes are issued to the moment the
last process is seen at its revision: it includes the write itself, the watch event, the
validation and apply in each process, and up to one polling interval (``POLL_INTERVAL_S``,
concurrent scrapes of only the processes not there yet, so that the polling does not load
the processes it measures). Printed: p50, p99 and max over the changes, the p50 of a
single process, and one result row whose goal is ``GOAL_S`` for the p99 (issue: "applies a
change within one second"). The exit code is 1 if the goal is missed.

The processes' metrics addresses come from their logs, as ``make run`` finds them
(:func:`devstack.scrape_targets.targets_from_logs`).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench._report import result
from bench._workload import RunningStack, running_stack
from devstack.credentials import stack_credentials
from devstack.scrape_targets import targets_from_logs
from kit.liveconfig import ChangeRecord, ConfigStore

CHANGES: Final = 50
WARMUP_CHANGES: Final = 2
KEY: Final = "log_level"
# Never more verbose than the default: the changes must not load the processes they time.
VALUES: Final = ("WARNING", "INFO")
GOAL_S: Final = 1.0
POLL_INTERVAL_S: Final = 0.02
# A change not applied everywhere within this is a failure, not a slow sample.
DEADLINE_S: Final = 30.0
# Every process exports the metric from its start (0 before any remote setting).
READY_TIMEOUT_S: Final = 60.0
PAUSE_S: Final = 0.1

_VERSION_LINE: Final = re.compile(
    r'^webook_config_version\{service="(?P<service>[^"]+)"\} (?P<value>\S+)$', re.MULTILINE
)


@dataclass(frozen=True)
class Process:
    """One process of the stack: its service (the settings it follows) and metrics URL."""

    service: str
    metrics_url: str


def config_version(metrics_text: str, service: str) -> int | None:
    """The ``webook_config_version`` of ``service`` in a ``/metrics`` page, if exported."""
    for match in _VERSION_LINE.finditer(metrics_text):
        if match["service"] == service:
            return int(float(match["value"]))
    return None


async def scrape_version(http: httpx.AsyncClient, process: Process) -> int | None:
    """The process's applied configuration version right now (``None``: not exported)."""
    answer = await http.get(process.metrics_url)
    answer.raise_for_status()
    return config_version(answer.text, process.service)


def stack_processes(log_dir: Path) -> list[Process]:
    """Every webook process of the stack whose log names its metrics address."""
    return [
        Process(target.job, f"http://{target.address}/metrics")
        for target in targets_from_logs(log_dir)
    ]


async def wait_until_applied(
    http: httpx.AsyncClient,
    revisions: Mapping[str, int],
    processes: Sequence[Process],
    started: float,
    *,
    deadline_s: float = DEADLINE_S,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> dict[Process, float]:
    """Seconds from ``started`` (``time.perf_counter``) until each process showed a version
    at or past its service's revision in ``revisions``; ``TimeoutError`` past the deadline."""
    pending = set(processes)
    seen: dict[Process, float] = {}
    while pending:
        order = sorted(pending, key=lambda p: p.metrics_url)
        versions = await asyncio.gather(*(scrape_version(http, p) for p in order))
        now = time.perf_counter()
        for process, version in zip(order, versions, strict=True):
            if version is not None and version >= revisions[process.service]:
                seen[process] = now - started
                pending.discard(process)
        if not pending:
            break
        if now - started > deadline_s:
            late = sorted(f"{p.service} ({p.metrics_url})" for p in pending)
            raise TimeoutError(f"not applied within {deadline_s:.0f} s by {late}")
        await asyncio.sleep(poll_interval_s)
    return seen


async def change_everywhere(
    store: ConfigStore, environment: str, services: Sequence[str], value: str, why: str
) -> dict[str, int]:
    """Set ``KEY`` to ``value`` for every service at once; each change's etcd revision."""
    records: list[ChangeRecord] = await asyncio.gather(
        *(
            store.set(environment, service, {KEY: value}, who="bench", why=why)
            for service in services
        )
    )
    return {record.service: record.revision for record in records}


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Timings:
    """Seconds per change: until every process applied it (``everywhere``), until the
    writes returned (``written``); per process and change, until it applied (``single``)."""

    everywhere: list[float]
    written: list[float]
    single: list[float]
    processes: int


async def measure(stack: RunningStack) -> Timings:
    """Make the changes and time them (see the module docstring)."""
    processes = stack_processes(stack.scratch / "logs")
    services = sorted({p.service for p in processes})
    operator = stack_credentials(stack.scratch).config_operator
    environment = stack.infra.mode
    timings = Timings([], [], [], len(processes))
    async with (
        httpx.AsyncClient(timeout=5) as http,
        ConfigStore.connect(
            stack.infra.etcd_endpoints,
            username=operator.username,
            password=operator.password,
        ) as store,
    ):
        started = time.perf_counter()
        missing = await wait_until_applied(
            http, dict.fromkeys(services, 0), processes, started, deadline_s=READY_TIMEOUT_S
        )
        print(
            f"{len(missing)} processes export webook_config_version: "
            + ", ".join(sorted(p.service for p in missing))
        )
        for index in range(WARMUP_CHANGES + CHANGES):
            value = VALUES[index % len(VALUES)]
            started = time.perf_counter()
            revisions = await change_everywhere(
                store, environment, services, value, f"bench.config_propagation #{index}"
            )
            written = time.perf_counter() - started
            seen = await wait_until_applied(http, revisions, processes, started)
            if index >= WARMUP_CHANGES:
                timings.everywhere.append(max(seen.values()))
                timings.written.append(written)
                timings.single.extend(seen.values())
            await asyncio.sleep(PAUSE_S)
    return timings


def main() -> int:
    """Start the stack, measure, print; 1 if the p99 misses the goal."""
    with tempfile.TemporaryDirectory(prefix="bench-config-") as scratch:
        print("starting the whole stack ...")
        with running_stack(Path(scratch)) as stack:
            timings = asyncio.run(measure(stack))
    everywhere, count = timings.everywhere, timings.processes
    p50, p99, worst = (percentile(everywhere, q) for q in (50, 99, 100))
    print(
        f"{len(everywhere)} changes of {KEY!r} for every service, {count} processes; "
        f"polling every {POLL_INTERVAL_S * 1000:.0f} ms"
    )
    print(
        f"until every process applied it: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {worst * 1000:.0f} ms (mean {statistics.fmean(everywhere) * 1000:.0f} ms)"
    )
    print(
        f"of which the writes (a read and a write transaction per service, all at once): "
        f"p50 {percentile(timings.written, 50) * 1000:.0f} ms, "
        f"p99 {percentile(timings.written, 99) * 1000:.0f} ms"
    )
    print(f"one process: p50 {percentile(timings.single, 50) * 1000:.0f} ms")
    met = p99 <= GOAL_S
    result(
        f"config change applied by all {count} processes, p99 of {len(everywhere)}",
        f"{p99 * 1000:.0f} ms",
        goal=f"<= {GOAL_S * 1000:.0f} ms",
        met=met,
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
