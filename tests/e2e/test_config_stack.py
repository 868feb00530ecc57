"""Live settings across the running stack: one change reaches every process, a rollback
restores the exact earlier values everywhere.

The configuration operator (the ``config-operator`` etcd user of the stack's credentials,
as ``webookctl config`` writes) changes ``trace_sample_ratio`` — a live setting every
process has, harmless to the other tests — of every service of the stack and of the
gateway. Each process must show the change's etcd revision as its
``webook_config_version`` (its ``/metrics``) and log the value it applied ("settings
applied"); after two changes, a rollback to the first must leave etcd with exactly the
first change's values and every process applying them again. The settings are put back
as they were at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bench.config_propagation import Process, config_version, wait_until_applied
from devstack.infra import ManagedProcess
from devstack.scrape_targets import METRICS_MESSAGE
from kit.liveconfig import DELETE, ChangeRecord, ConfigStore
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

KEY = "trace_sample_ratio"
FIRST, SECOND = 0.5, 0.25
# Generous: the whole stack shares two loaded cores with the rest of the suite.
DEADLINE_S = 30.0
WHO = "e2e"


@dataclass(frozen=True)
class StackProcess:
    """A process of the stack, where its metrics are and where it logs."""

    process: Process
    handle: ManagedProcess


def _metrics_port(handle: ManagedProcess) -> int:
    """The metrics port the process logged at its last start."""
    port = None
    for line in handle.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("msg") == METRICS_MESSAGE:
            port = record.get("metrics_port")
    assert isinstance(port, int), f"{handle.name} never logged its metrics port"
    return port


def _processes(stack: RunningStack) -> list[StackProcess]:
    found = [
        StackProcess(Process(service, f"http://127.0.0.1:{_metrics_port(handle)}/metrics"), handle)
        for service, handles in stack.services.items()
        for handle in handles
    ]
    found.append(StackProcess(Process("gateway", f"{stack.base_url}/metrics"), stack.gateway))
    return found


def _applied(handle: ManagedProcess, revision: int) -> dict[str, Any] | None:
    """What the process logged it applied at ``revision`` (``changed``), if it did."""
    for line in handle.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("msg") == "settings applied"
            and record.get("revision") == revision
        ):
            changed = record.get("changed")
            return changed if isinstance(changed, dict) else None
    return None


async def _until_logged(
    processes: list[StackProcess], revisions: dict[str, int], value: float
) -> None:
    """Wait until every process logged applying ``KEY = value`` at its service's revision."""
    deadline = time.monotonic() + DEADLINE_S
    pending = list(processes)
    while pending:
        pending = [
            p
            for p in pending
            if (_applied(p.handle, revisions[p.process.service]) or {}).get(KEY) != value
        ]
        if pending:
            assert time.monotonic() < deadline, [p.handle.name for p in pending]
            await asyncio.sleep(0.2)


@pytest.fixture
async def operator_store(stack: RunningStack) -> AsyncIterator[ConfigStore]:
    credentials = stack.infra.credentials
    assert credentials is not None
    operator = credentials.config_operator
    async with ConfigStore.connect(
        stack.infra.etcd_endpoints, username=operator.username, password=operator.password
    ) as store:
        yield store


async def _set_everywhere(
    store: ConfigStore, environment: str, services: list[str], value: float
) -> dict[str, ChangeRecord]:
    records = await asyncio.gather(
        *(store.set(environment, s, {KEY: value}, who=WHO, why="e2e") for s in services)
    )
    return {record.service: record for record in records}


async def test_a_change_reaches_every_process_and_a_rollback_restores_it(
    stack: RunningStack, operator_store: ConfigStore
) -> None:
    processes = _processes(stack)
    metrics = [p.process for p in processes]
    services = sorted({p.service for p in metrics})
    environment = stack.infra.mode
    store = operator_store
    before = {s: (await store.get(environment, s))[0] for s in services}
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            first = await _set_everywhere(store, environment, services, FIRST)
            revisions = {s: r.revision for s, r in first.items()}
            await wait_until_applied(
                http, revisions, metrics, time.perf_counter(), deadline_s=DEADLINE_S
            )
            await _until_logged(processes, revisions, FIRST)

            await _set_everywhere(store, environment, services, SECOND)
            rolled_back = {
                s: await store.rollback(
                    environment, s, first[s].version, who=WHO, why="e2e rollback"
                )
                for s in services
            }
            for service, record in rolled_back.items():
                values, version = await store.get(environment, service)
                assert values == first[service].after == record.after, service
                assert version == record.version
                assert values[KEY] == FIRST
            revisions = {s: r.revision for s, r in rolled_back.items()}
            await wait_until_applied(
                http, revisions, metrics, time.perf_counter(), deadline_s=DEADLINE_S
            )
            # Each process went back from SECOND to FIRST at the rollback's revision.
            await _until_logged(processes, revisions, FIRST)
            for process in metrics:
                answer = await http.get(process.metrics_url)
                applied = config_version(answer.text, process.service)
                assert applied is not None
                assert applied >= revisions[process.service]
        finally:
            for service in services:
                current, _ = await store.get(environment, service)
                restore = {
                    key: before[service].get(key, DELETE)
                    for key in current.keys() | before[service].keys()
                    if current.get(key) != before[service].get(key)
                }
                if restore:
                    await store.set(environment, service, restore, who=WHO, why="e2e cleanup")
