"""gRPC-level tests of the scheduler process on SQLite and MariaDB.

The process is the real composition root (``build_runner``): the admin API over the jobs
table, and the scheduler loop running as a component, so a job made due with ``RunNow``
is taken, run and recorded by the same process. Every RPC and refusal (the remote
executors' configs included); a run in progress when the process stops is handed back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest

from kit.config import Mode
from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.server import ServiceRunner
from services.scheduler.__main__ import build_runner
from services.scheduler.errors import DOMAIN, Reason
from services.scheduler.executors import ExecutorRegistry, FencedStore, RunContext
from services.scheduler.scheduler import SchedulerLoop
from services.scheduler.settings import SchedulerSettings
from webook.scheduler.v1 import scheduler_pb2
from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceStub

if TYPE_CHECKING:
    from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceAsyncStub

pytestmark = pytest.mark.integration

# A loaded two-core machine: bounds a hang only; conditions are polled, never slept on.
WAIT_S = 60.0
EVERY_MINUTE = "* * * * *"


@dataclass
class Scheduled:
    """A running scheduler process, its client and what its test executors saw."""

    runner: ServiceRunner
    stub: SchedulerServiceAsyncStub
    store: FencedStore
    # Set by the ``test.block`` executor when a run started; the run then waits forever.
    blocked: asyncio.Event


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`WAIT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def scheduled(database_url: str) -> AsyncIterator[Scheduled]:
    """The scheduler process on a free port, ticking every 50 ms, with two test executors."""
    store = FencedStore()
    blocked = asyncio.Event()

    async def record(context: RunContext) -> None:
        store.write(context.job_name, context.token, context.config.get("value"))

    async def block(context: RunContext) -> None:
        blocked.set()
        await asyncio.Event().wait()

    executors = ExecutorRegistry()
    executors.register("test.record", record)
    executors.register("test.block", block)
    settings = SchedulerSettings(
        mode=Mode.TEST,
        database_url=database_url,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        instance_id="grpc-test",
        tick_seconds=0.05,
        lease_seconds=30,
        renew_seconds=5,
        # a run in progress at stop waits this long before it is interrupted
        stop_grace_seconds=0.5,
    )
    runner = build_runner(settings, executors=executors)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Scheduled(runner, SchedulerServiceStub(channel), store, blocked)
    finally:
        await runner.stop()


async def refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The status code, ErrorInfo reason and metadata of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = app_error_from_rpc(caught.value)
    assert error.domain == DOMAIN
    assert error.message
    return caught.value.code(), error.reason, dict(error.metadata)


def add_request(
    name: str, function: str = "noop", cron: str = EVERY_MINUTE, **config: object
) -> scheduler_pb2.AddJobRequest:
    """A ``local`` job calling ``function``."""
    return scheduler_pb2.AddJobRequest(
        name=name,
        cron=cron,
        executor_kind="local",
        executor_config=json.dumps({"function": function, **config}),
    )


async def history(stub: SchedulerServiceAsyncStub, name: str) -> list[scheduler_pb2.Execution]:
    """The runs of ``name``, newest first."""
    reply = await stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(name=name))
    return list(reply.executions)


async def test_add_get_list_pause_resume(scheduled: Scheduled) -> None:
    stub = scheduled.stub
    added = (await stub.AddJob(add_request("b.nightly", "log", "0 3 * * *", message="hi"))).job
    assert (added.name, added.cron, added.executor_kind) == ("b.nightly", "0 3 * * *", "local")
    assert json.loads(added.executor_config) == {"function": "log", "message": "hi"}
    assert added.status == scheduler_pb2.JOB_STATUS_ACTIVE
    assert added.next_run_ms > added.ctime_ms > 0
    assert (added.holder, added.lease_until_ms, added.version) == ("", 0, 0)
    paused_at_add = scheduler_pb2.AddJobRequest(
        name="a.paused", cron="@hourly", executor_kind="local",
        executor_config='{"function": "noop"}', paused=True,
    )  # fmt: skip
    assert (await stub.AddJob(paused_at_add)).job.status == scheduler_pb2.JOB_STATUS_PAUSED

    listed = (await stub.ListJobs(scheduler_pb2.ListJobsRequest())).jobs
    assert [job.name for job in listed] == ["a.paused", "b.nightly"]
    got = (await stub.GetJob(scheduler_pb2.GetJobRequest(name="b.nightly"))).job
    assert got == added

    paused = (await stub.PauseJob(scheduler_pb2.PauseJobRequest(name="b.nightly"))).job
    assert paused.status == scheduler_pb2.JOB_STATUS_PAUSED
    # Pausing twice is fine (idempotent).
    again = (await stub.PauseJob(scheduler_pb2.PauseJobRequest(name="b.nightly"))).job
    assert again.status == scheduler_pb2.JOB_STATUS_PAUSED
    resumed = (await stub.ResumeJob(scheduler_pb2.ResumeJobRequest(name="b.nightly"))).job
    assert resumed.status == scheduler_pb2.JOB_STATUS_ACTIVE
    assert resumed.next_run_ms >= added.next_run_ms


async def test_run_now_is_taken_run_and_recorded_by_the_loop(scheduled: Scheduled) -> None:
    stub = scheduled.stub
    await stub.AddJob(add_request("counter", "test.record", value=7))
    assert await history(stub, "counter") == []
    due = (await stub.RunNow(scheduler_pb2.RunNowRequest(name="counter"))).job
    assert due.next_run_ms <= due.utime_ms

    async def ran_ok() -> bool:
        runs = await history(stub, "counter")
        return bool(runs) and runs[0].outcome == scheduler_pb2.OUTCOME_OK

    await until(ran_ok, "the job's run to end ok")
    (run,) = await history(stub, "counter")
    assert (run.token, run.instance, run.error) == (1, "grpc-test", "")
    assert run.ended_ms >= run.started_ms > 0
    assert [(w.token, w.value) for w in scheduled.store.writes("counter")] == [(1, 7)]
    job = (await stub.GetJob(scheduler_pb2.GetJobRequest(name="counter"))).job
    # Released: free again, due at the next minute, the version being the run's token.
    assert (job.holder, job.lease_until_ms, job.version) == ("", 0, 1)
    assert job.next_run_ms > run.started_ms

    # A second run gets a higher token.
    await stub.RunNow(scheduler_pb2.RunNowRequest(name="counter"))

    async def ran_twice() -> bool:
        runs = await history(stub, "counter")
        return len(runs) == 2 and runs[0].outcome == scheduler_pb2.OUTCOME_OK

    await until(ran_twice, "the second run")
    assert [w.token for w in scheduled.store.writes("counter")] == [1, 2]
    one = scheduler_pb2.ListExecutionsRequest(name="counter", limit=1)
    limited = await stub.ListExecutions(one)
    assert [e.token for e in limited.executions] == [2]


async def test_stopping_hands_a_run_in_progress_back(scheduled: Scheduled) -> None:
    stub = scheduled.stub
    await stub.AddJob(add_request("long", "test.block"))
    await stub.RunNow(scheduler_pb2.RunNowRequest(name="long"))
    await asyncio.wait_for(scheduled.blocked.wait(), WAIT_S)
    holder = (await stub.GetJob(scheduler_pb2.GetJobRequest(name="long"))).job.holder
    assert holder == "grpc-test"

    loop = scheduled.runner.component(SchedulerLoop)
    await loop.stop()
    assert not loop.running
    job = (await stub.GetJob(scheduler_pb2.GetJobRequest(name="long"))).job
    assert (job.holder, job.lease_until_ms) == ("", 0)
    # Due at once for another instance: the interrupted run keeps its due time.
    assert job.next_run_ms <= job.utime_ms
    (run,) = await history(stub, "long")
    assert run.outcome == scheduler_pb2.OUTCOME_FAILED
    assert "interrupted" in run.error


async def test_refusals(scheduled: Scheduled) -> None:
    stub = scheduled.stub
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    code, reason, metadata = await refusal(stub.AddJob(add_request("j", cron="61 * * * *")))
    assert (code, reason) == (invalid, Reason.INVALID_CRON)
    assert metadata["cron_field"] == "minute"

    unknown_kind = scheduler_pb2.AddJobRequest(
        name="j", cron=EVERY_MINUTE, executor_kind="shell", executor_config="{}"
    )
    assert (await refusal(stub.AddJob(unknown_kind)))[:2] == (invalid, Reason.UNKNOWN_EXECUTOR)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddJob(add_request("j", "no.such.function"))
    assert "no executor function named 'no.such.function'" in (caught.value.details() or "")
    assert "noop" in (caught.value.details() or "")  # the registered ones are listed

    for config in ("{not json", "[1, 2]", '{"other": 1}'):
        bad = scheduler_pb2.AddJobRequest(
            name="j", cron=EVERY_MINUTE, executor_kind="local", executor_config=config
        )
        code, reason, metadata = await refusal(stub.AddJob(bad))
        assert (code, reason, metadata["field"]) == (invalid, Reason.INVALID_JOB, "executor_config")

    for name in ("", "-starts-with-dash", "x" * 129, "has space"):
        code, reason, metadata = await refusal(stub.AddJob(add_request(name)))
        assert (code, reason, metadata["field"]) == (invalid, Reason.INVALID_JOB, "name")
        code, reason, _ = await refusal(stub.GetJob(scheduler_pb2.GetJobRequest(name=name)))
        assert (code, reason) == (invalid, Reason.INVALID_JOB)

    await stub.AddJob(add_request("taken"))
    code, reason, _ = await refusal(stub.AddJob(add_request("taken")))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, Reason.JOB_EXISTS)

    missing = grpc.StatusCode.NOT_FOUND, Reason.JOB_NOT_FOUND
    assert (await refusal(stub.GetJob(scheduler_pb2.GetJobRequest(name="nope"))))[:2] == missing
    assert (await refusal(stub.PauseJob(scheduler_pb2.PauseJobRequest(name="nope"))))[:2] == missing
    resume = stub.ResumeJob(scheduler_pb2.ResumeJobRequest(name="nope"))
    assert (await refusal(resume))[:2] == missing
    assert (await refusal(stub.RunNow(scheduler_pb2.RunNowRequest(name="nope"))))[:2] == missing
    runs = stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(name="nope"))
    assert (await refusal(runs))[:2] == missing

    too_many = stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(name="taken", limit=501))
    code, reason, metadata = await refusal(too_many)
    assert (code, reason, metadata["field"]) == (invalid, Reason.INVALID_JOB, "limit")


async def test_remote_jobs_are_added_and_their_bad_configs_refused(scheduled: Scheduled) -> None:
    stub = scheduled.stub
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    run_ranking = "webook.ranking.v1.RankingService/RunRanking"
    top_articles = "webook.ranking.v1.RankingService/TopArticles"

    def remote(kind: str, **config: object) -> scheduler_pb2.AddJobRequest:
        return scheduler_pb2.AddJobRequest(
            name="remote", cron=EVERY_MINUTE, executor_kind=kind, executor_config=json.dumps(config)
        )

    refused = [
        (remote("http", url="ftp://h/x"), Reason.INVALID_JOB, "url"),
        (remote("http", url="http://h/", retries=9), Reason.INVALID_JOB, "retries"),
        (remote("http", url="http://h/", timeout_s=0), Reason.INVALID_JOB, "timeout_s"),
        (remote("grpc", service="ranking"), Reason.INVALID_JOB, "method"),
        (
            remote("grpc", service="ranking", method="webook.ranking.v1.RankingService/Nope"),
            Reason.UNKNOWN_EXECUTOR,
            "method",
        ),
        (
            remote("grpc", service="ranking", method=top_articles),
            Reason.INVALID_JOB,
            "method",
        ),
        (
            remote("grpc", service="ranking", method=run_ranking, request={"x": 1}),
            Reason.INVALID_JOB,
            "request",
        ),
    ]
    for request, expected, key in refused:
        code, reason, metadata = await refusal(stub.AddJob(request))
        assert (code, reason) == (invalid, expected)
        assert (metadata["field"], metadata["config_field"]) == ("executor_config", key)

    added = (await stub.AddJob(remote("grpc", service="ranking", method=run_ranking))).job
    assert added.executor_kind == "grpc"
    assert json.loads(added.executor_config) == {"method": run_ranking, "service": "ranking"}
    listed = (await stub.ListJobs(scheduler_pb2.ListJobsRequest())).jobs
    assert [job.name for job in listed] == ["remote"]
