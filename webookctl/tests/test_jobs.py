"""``webookctl jobs`` against the real scheduler process over mutual TLS.

The scheduler runs in this test's event loop (its composition root, ``build_runner``) on
SQLite, ticking every 50 ms, with the PKI a local stack makes
(:func:`devstack.tls.stack_pki`): the operator's certificate is the one its admin API
accepts; workloads' certificates (the gateway's, the scheduler's own) are refused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.tls import OPERATOR, stack_pki
from kit.grpcx.server import ServiceRunner
from kit.migrations import upgrade_async
from kit.security.pki import Pki
from services.scheduler.__main__ import build_runner
from services.scheduler.settings import SchedulerSettings
from webookctl.tests.run import Result, run

pytestmark = pytest.mark.integration

# Bounds a hang on a loaded machine only; the run is awaited as a condition.
WAIT_S = 60.0


@dataclass(frozen=True)
class SchedulerStack:
    runner: ServiceRunner
    pki: Pki
    prefix: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.runner.port}"

    def tls_flags(self, identity: str = OPERATOR) -> list[str]:
        cert, key = self.pki.files(identity)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.pki.ca_file)]

    async def jobs(self, *argv: str, identity: str = OPERATOR) -> Result:
        """``webookctl jobs argv --address <the scheduler>`` as ``identity``."""
        return await run(*self.tls_flags(identity), "jobs", *argv, "--address", self.address)


@pytest.fixture
async def scheduler_stack(tmp_path: Path, etcd_endpoint: str) -> AsyncIterator[SchedulerStack]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'scheduler.db'}"
    await upgrade_async("scheduler", database_url)
    pki = stack_pki(tmp_path)
    cert, key = pki.files("scheduler")
    prefix = f"/webookctl-test-{uuid.uuid4().hex[:8]}/services"
    settings = SchedulerSettings(
        mode="test",
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        database_url=database_url,
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=prefix,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_ca_file=str(pki.ca_file),
        instance_id="ctl-test",
        tick_seconds=0.05,
    )
    runner = build_runner(settings)
    await runner.start()
    try:
        yield SchedulerStack(runner, pki, prefix)
    finally:
        await runner.stop()


async def test_add_list_run_now_history_pause_resume(scheduler_stack: SchedulerStack) -> None:
    stack = scheduler_stack
    added = await stack.jobs(
        "add", "greeter", "*/5 * * * *", "--function", "log", "--config", '{"message": "hi"}',
        "--json",
    )  # fmt: skip
    assert added.status == 0, added.err
    job = added.json()["job"]
    assert (job["name"], job["cron"], job["status"]) == ("greeter", "*/5 * * * *", "active")
    assert job["executor_config"] == {"function": "log", "message": "hi"}
    assert set(job) == {
        "name", "cron", "executor_kind", "executor_config", "status", "version",
        "next_run_ms", "holder", "lease_until_ms", "ctime_ms", "utime_ms",
    }  # fmt: skip

    quiet = await stack.jobs("add", "quiet", "@daily", "--function", "noop", "--paused")
    assert quiet.status == 0, quiet.err
    assert quiet.out.startswith("added: job quiet is paused; cron '@daily'")

    listed = await stack.jobs("list")
    assert listed.status == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split() == [
        "NAME", "STATUS", "CRON", "EXECUTOR", "NEXT", "RUN", "RUNNING", "ON", "TOKEN",
    ]  # fmt: skip
    assert [row.split()[:2] for row in rows] == [["greeter", "active"], ["quiet", "paused"]]
    assert "local:log" in rows[0]
    as_json = await stack.jobs("list", "--json")
    assert [j["name"] for j in as_json.json()["jobs"]] == ["greeter", "quiet"]

    never = await stack.jobs("history", "greeter")
    assert (never.status, never.out) == (0, "job greeter has not run yet\n")

    due = await stack.jobs("run-now", "greeter")
    assert due.status == 0, due.err
    assert due.out.startswith("due now: job greeter is active")

    async def ran() -> Result:
        while True:
            result = await stack.jobs("history", "greeter", "--json")
            assert result.status == 0, result.err
            runs = result.json()["executions"]
            if runs and runs[0]["outcome"] != "running":
                return result
            await asyncio.sleep(0.05)

    history = (await asyncio.wait_for(ran(), WAIT_S)).json()
    (execution,) = history["executions"]
    assert (execution["outcome"], execution["token"], execution["instance"]) == (
        "ok", 1, "ctl-test",
    )  # fmt: skip
    shown = await stack.jobs("history", "greeter", "--limit", "5")
    header, row = shown.out.splitlines()
    assert header.split() == ["ID", "STARTED", "TOOK", "OUTCOME", "TOKEN", "INSTANCE", "ERROR"]
    assert " ok " in row
    assert "ctl-test" in row

    paused = await stack.jobs("pause", "greeter", "--json")
    assert paused.json()["job"]["status"] == "paused"
    resumed = await stack.jobs("resume", "greeter")
    assert resumed.status == 0, resumed.err
    assert resumed.out.startswith("resumed: job greeter is active; cron '*/5 * * * *'; next run ")


async def test_definitions_the_scheduler_refuses(scheduler_stack: SchedulerStack) -> None:
    stack = scheduler_stack
    bad_cron = await stack.jobs("add", "j", "61 * * * *", "--function", "noop")
    assert (bad_cron.status, bad_cron.out) == (1, "")
    assert bad_cron.err == (
        "webookctl: scheduler AddJob: INVALID_ARGUMENT SCHEDULER_INVALID_CRON: bad cron "
        "expression '61 * * * *': minute field: 61 is out of range 0-59\n"
    )
    unknown = await stack.jobs("add", "j", "* * * * *", "--function", "rm-rf")
    assert unknown.status == 1
    assert "SCHEDULER_UNKNOWN_EXECUTOR: no executor function named 'rm-rf'" in unknown.err
    assert "registered: log, noop" in unknown.err
    kind = await stack.jobs("add", "j", "* * * * *", "--kind", "shell")
    assert kind.status == 1
    assert "unknown executor kind 'shell' (supported: local)" in kind.err
    no_function = await stack.jobs("add", "j", "* * * * *")
    assert no_function.status == 1
    assert "SCHEDULER_INVALID_JOB" in no_function.err

    for config in ("{oops", "[1]"):
        usage = await stack.jobs("add", "j", "* * * * *", "--function", "noop", "--config", config)
        assert usage.status == 2
        assert "--config" in usage.err

    for command in ("pause", "resume", "run-now", "history"):
        missing = await stack.jobs(command, "nope")
        assert missing.status == 1
        assert "NOT_FOUND SCHEDULER_JOB_NOT_FOUND: no job named 'nope'" in missing.err
        assert missing.err.count("\n") == 1
    listed = await stack.jobs("list")
    assert (listed.status, listed.out) == (0, "no jobs\n")


@pytest.mark.parametrize("workload", ["gateway", "scheduler"])
async def test_a_workload_certificate_is_refused(
    scheduler_stack: SchedulerStack, workload: str
) -> None:
    result = await scheduler_stack.jobs("list", identity=workload)
    assert (result.status, result.out) == (1, "")
    assert result.err.startswith("webookctl: scheduler ListJobs: PERMISSION_DENIED")
    assert "operator certificate" in result.err


async def test_found_through_etcd(
    scheduler_stack: SchedulerStack, etcd_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBOOKCTL_REGISTRY_PREFIX", scheduler_stack.prefix)
    added = await run(
        "--etcd", etcd_endpoint, *scheduler_stack.tls_flags(),
        "jobs", "add", "beat", "@hourly", "--function", "noop", "--json",
    )  # fmt: skip
    assert added.status == 0, added.err
    assert json.loads(added.out)["job"]["cron"] == "@hourly"
