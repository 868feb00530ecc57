"""``webookctl jobs`` against the real scheduler process over mutual TLS.

The scheduler runs in this test's event loop (its composition root, ``build_runner``) on
SQLite, ticking every 50 ms, with the PKI a local stack makes
(:func:`devstack.tls.stack_pki`): the operator's certificate is the one its admin API
accepts; workloads' certificates (the gateway's, the scheduler's own) are refused.

How ``jobs add`` turns its flags into an executor's config, and refuses a flag of another
kind or a missing required one, is checked without a scheduler: a usage error is found
before anything is sent. An ``http`` job's run reaches a real HTTP endpoint of the test
(:class:`~services.scheduler.tests.callees.HttpCallee`) with the run's fencing token.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.tls import OPERATOR, stack_pki
from kit.grpcx.server import ServiceRunner
from kit.migrations import upgrade_async
from kit.security.pki import Pki
from services.scheduler.__main__ import build_runner
from services.scheduler.settings import SchedulerSettings
from services.scheduler.tests.callees import HttpCallee
from webookctl.__main__ import build_parser
from webookctl.errors import UsageError
from webookctl.jobs import executor_config, executor_label
from webookctl.tests.run import Result, run

integration = pytest.mark.integration

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


@integration
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
    assert (never.status, never.out) == (0, "job greeter (local:log) has not run yet\n")

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
    assert history["executor"] == "local:log"
    (execution,) = history["executions"]
    assert (execution["outcome"], execution["token"], execution["instance"]) == (
        "ok", 1, "ctl-test",
    )  # fmt: skip
    shown = await stack.jobs("history", "greeter", "--limit", "5")
    title, header, row = shown.out.splitlines()
    assert title == "runs of job greeter (local:log), newest first:"
    assert header.split() == ["ID", "STARTED", "TOOK", "OUTCOME", "TOKEN", "INSTANCE", "ERROR"]
    assert " ok " in row
    assert "ctl-test" in row

    paused = await stack.jobs("pause", "greeter", "--json")
    assert paused.json()["job"]["status"] == "paused"
    resumed = await stack.jobs("resume", "greeter")
    assert resumed.status == 0, resumed.err
    assert resumed.out.startswith("resumed: job greeter is active; cron '*/5 * * * *'; next run ")


@integration
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
    assert "unknown executor kind 'shell' (supported: local" in kind.err
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


@integration
@pytest.mark.parametrize("workload", ["gateway", "scheduler"])
async def test_a_workload_certificate_is_refused(
    scheduler_stack: SchedulerStack, workload: str
) -> None:
    result = await scheduler_stack.jobs("list", identity=workload)
    assert (result.status, result.out) == (1, "")
    assert result.err.startswith("webookctl: scheduler ListJobs: PERMISSION_DENIED")
    assert "operator certificate" in result.err


@integration
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


RUN_RANKING = "webook.ranking.v1.RankingService/RunRanking"


def add_config(*argv: str) -> dict[str, Any]:
    """The executor config ``webookctl jobs add j '* * * * *' argv`` would send."""
    return executor_config(build_parser().parse_args(["jobs", "add", "j", "* * * * *", *argv]))


def test_http_flags_build_the_http_config() -> None:
    assert add_config("--kind", "http", "--url", "https://hooks.example/run") == {
        "url": "https://hooks.example/run"
    }
    assert add_config(
        "--kind", "http", "--url", "http://127.0.0.1:8000/x", "--body", '{"day": 1}',
        "--retries", "0", "--job-timeout", "2.5",
    ) == {
        "url": "http://127.0.0.1:8000/x", "body": {"day": 1}, "retries": 0, "timeout_s": 2.5,
    }  # fmt: skip


def test_grpc_flags_build_the_grpc_config() -> None:
    assert add_config(
        "--kind", "grpc", "--service", "ranking", "--method", RUN_RANKING,
        "--request", '{"fencing_token": 0}', "--job-timeout", "120",
    ) == {
        "service": "ranking", "method": RUN_RANKING, "request": {"fencing_token": 0},
        "timeout_s": 120,
    }  # fmt: skip


def test_flags_are_laid_over_config() -> None:
    base = '{"url": "http://a.example/", "retries": 4, "body": {"k": "v"}}'
    assert add_config("--kind", "http", "--config", base, "--retries", "1") == {
        "url": "http://a.example/", "retries": 1, "body": {"k": "v"},
    }  # fmt: skip
    # The required keys may come from --config alone.
    grpc = json.dumps({"service": "ranking", "method": RUN_RANKING})
    assert add_config("--kind", "grpc", "--config", grpc, "--job-timeout", "30") == {
        "service": "ranking", "method": RUN_RANKING, "timeout_s": 30,
    }  # fmt: skip
    assert add_config("--function", "log", "--config", '{"message": "hi"}') == {
        "function": "log", "message": "hi",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kind", "http"], '--kind http needs --url (or "url" in --config)'),
        (["--kind", "http", "--body", "{}"], "--kind http needs --url"),
        (["--kind", "grpc", "--method", RUN_RANKING], "--kind grpc needs --service"),
        (["--kind", "grpc", "--service", "ranking"], "--kind grpc needs --method"),
        (["--url", "http://a.example/"], "--url is for --kind http, not --kind local"),
        (["--kind", "grpc", "--service", "s", "--method", "a.B/C", "--retries", "1"],
         "--retries is for --kind http, not --kind grpc"),
        (["--kind", "http", "--url", "http://a/", "--function", "log"],
         "--function is for --kind local, not --kind http"),
        (["--job-timeout", "5", "--function", "log"],
         "--job-timeout is for --kind http or --kind grpc, not --kind local"),
        (["--kind", "http", "--url", "http://a/", "--body", "[1]"],
         "--body must be a JSON object"),
        (["--kind", "grpc", "--service", "s", "--method", "a.B/C", "--request", "{oops"],
         "--request is not valid JSON"),
    ],
)  # fmt: skip
def test_usage_errors_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        add_config(*argv)
    assert message in caught.value.message


async def test_a_usage_error_exits_2_before_anything_is_sent() -> None:
    # Nothing listens at this address: a usage error is found before the call.
    result = await run(
        "jobs", "add", "j", "* * * * *", "--kind", "grpc", "--service", "ranking",
        "--address", "127.0.0.1:9",
    )  # fmt: skip
    assert (result.status, result.out) == (2, "")
    assert result.err == 'webookctl: --kind grpc needs --method (or "method" in --config)\n'


def test_executor_labels() -> None:
    assert executor_label("local", {"function": "log", "message": "x"}) == "local:log"
    assert executor_label("http", {"url": "https://h.example/run"}) == "http:https://h.example/run"
    grpc = {"service": "ranking", "method": f"/{RUN_RANKING}"}
    assert executor_label("grpc", grpc) == f"grpc:ranking/{RUN_RANKING}"
    assert executor_label("grpc", {"service": "ranking"}) == "grpc"
    assert executor_label("local", {}) == "local"


@integration
async def test_an_http_job_posts_its_token_to_the_url(scheduler_stack: SchedulerStack) -> None:
    stack = scheduler_stack
    callee = await HttpCallee().start()
    try:
        url = callee.url("/hooks/report")
        added = await stack.jobs(
            "add", "report", "@yearly", "--kind", "http", "--url", url, "--body", '{"day": 1}',
            "--retries", "0", "--job-timeout", "30", "--json",
        )  # fmt: skip
        assert added.status == 0, added.err
        job = added.json()["job"]
        assert (job["executor_kind"], job["executor_config"]) == (
            "http", {"url": url, "body": {"day": 1}, "retries": 0, "timeout_s": 30},
        )  # fmt: skip
        listed = await stack.jobs("list")
        assert f"http:{url}" in listed.out
        never = await stack.jobs("history", "report")
        assert never.out == f"job report (http:{url}) has not run yet\n"

        assert (await stack.jobs("run-now", "report")).status == 0

        async def ended() -> list[dict[str, Any]]:
            while True:
                result = await stack.jobs("history", "report", "--json")
                assert result.status == 0, result.err
                runs: list[dict[str, Any]] = result.json()["executions"]
                if runs and runs[0]["outcome"] != "running":
                    return runs
                await asyncio.sleep(0.05)

        (execution,) = await asyncio.wait_for(ended(), WAIT_S)
        assert execution["outcome"] == "ok", execution
        (request,) = callee.received
        assert (request.method, request.target) == ("POST", "/hooks/report")
        assert request.headers["x-webook-fencing-token"] == str(execution["token"])
        assert request.headers["x-webook-job"] == "report"
        body = request.json()
        assert (body["job"], body["token"], body["body"]) == (
            "report",
            execution["token"],
            {"day": 1},
        )
        shown = await stack.jobs("history", "report")
        assert shown.out.splitlines()[0] == f"runs of job report (http:{url}), newest first:"
    finally:
        await callee.close()


@integration
async def test_a_grpc_job_is_added_from_flags_and_listed(scheduler_stack: SchedulerStack) -> None:
    stack = scheduler_stack
    added = await stack.jobs(
        "add", "ranking.refresh", "*/5 * * * *", "--kind", "grpc", "--service", "ranking",
        "--method", RUN_RANKING, "--job-timeout", "120", "--paused", "--json",
    )  # fmt: skip
    assert added.status == 0, added.err
    job = added.json()["job"]
    assert (job["executor_kind"], job["status"]) == ("grpc", "paused")
    assert job["executor_config"] == {"service": "ranking", "method": RUN_RANKING, "timeout_s": 120}
    listed = await stack.jobs("list")
    (row,) = listed.out.splitlines()[1:]
    assert f"grpc:ranking/{RUN_RANKING}" in row.split()
    history = await stack.jobs("history", "ranking.refresh")
    assert history.out == f"job ranking.refresh (grpc:ranking/{RUN_RANKING}) has not run yet\n"


@integration
async def test_a_remote_config_the_scheduler_refuses(scheduler_stack: SchedulerStack) -> None:
    refused = await scheduler_stack.jobs(
        "add", "j", "* * * * *", "--kind", "http", "--url", "ftp://files.example/x"
    )
    assert (refused.status, refused.out) == (1, "")
    assert "INVALID_ARGUMENT SCHEDULER_INVALID_JOB" in refused.err
    assert "url" in refused.err
