"""Job administration on SQLite and MariaDB: definitions refused with clear errors, pause,
resume, run-now, and the execution history with its retention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kit.errors import AppError
from services.scheduler.cron import parse
from services.scheduler.domain import JobStatus, Outcome
from services.scheduler.errors import (
    DOMAIN,
    Reason,
    SchedulerAlreadyExists,
    SchedulerInvalidArgument,
    SchedulerNotFound,
)
from services.scheduler.executors import ExecutorRegistry, RunContext
from services.scheduler.scheduler import Scheduler, SchedulerOptions
from services.scheduler.service import JobService
from services.scheduler.tests.conftest import T0_MS, FakeClock, Units

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000


async def nothing(ctx: RunContext) -> None:
    """An executor that succeeds at once."""


def local(function: str = "nothing", **extra: Any) -> dict[str, Any]:
    """A local executor's config."""
    return {"function": function, **extra}


@pytest.fixture
def registry() -> ExecutorRegistry:
    """Executors with ``nothing`` registered."""
    executors = ExecutorRegistry()
    executors.register("nothing", nothing)
    return executors


@pytest.fixture
def service(
    units_factory: Callable[[], Units], registry: ExecutorRegistry, clock: FakeClock
) -> JobService:
    """The admin use cases on the test database."""
    return JobService(units_factory(), registry, clock=clock)


def refusal(caught: pytest.ExceptionInfo[AppError], reason: Reason, field: str) -> str:
    """Check a refusal's domain, reason and field; its message."""
    error = caught.value
    assert error.domain == DOMAIN
    assert error.reason == reason
    assert error.metadata["field"] == field
    return error.message


async def test_add_get_and_list(service: JobService) -> None:
    job = await service.add(
        "report.daily", "30 2 * * *", executor_kind="local", executor_config=local(day=1)
    )
    assert job.id > 0
    assert job.status is JobStatus.ACTIVE
    assert job.version == 0
    assert job.holder is None
    assert job.executor_config == {"function": "nothing", "day": 1}
    assert job.next_run_ms == parse("30 2 * * *").next_after_ms(T0_MS)
    assert await service.get("report.daily") == job
    await service.add("a.first", "@hourly", executor_kind="local", executor_config=local())
    assert [j.name for j in await service.list()] == ["a.first", "report.daily"]


async def test_bad_cron_is_refused_naming_the_field(service: JobService) -> None:
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("j", "61 * * * *", executor_kind="local", executor_config=local())
    message = refusal(caught, Reason.INVALID_CRON, "cron")
    assert caught.value.metadata["cron_field"] == "minute"
    assert "minute field: 61 is out of range 0-59" in message
    assert await service.list() == []


async def test_unknown_executors_are_refused(service: JobService) -> None:
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("j", "* * * * *", executor_kind="shell", executor_config=local())
    assert "unknown executor kind 'shell' (supported: local, http, grpc)" in refusal(
        caught, Reason.UNKNOWN_EXECUTOR, "executor_kind"
    )
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("j", "* * * * *", executor_kind="local", executor_config=local("nope"))
    assert "no executor function named 'nope' (registered: nothing)" in refusal(
        caught, Reason.UNKNOWN_EXECUTOR, "executor_config"
    )
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("j", "* * * * *", executor_kind="local", executor_config={})
    refusal(caught, Reason.INVALID_JOB, "executor_config")
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add(
            "j", "* * * * *", executor_kind="local", executor_config=local(x=object())
        )
    refusal(caught, Reason.INVALID_JOB, "executor_config")
    assert await service.list() == []


@pytest.mark.parametrize("name", ["", "-x", "has space", "x" * 129, "é"])
async def test_bad_names_are_refused(service: JobService, name: str) -> None:
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add(name, "* * * * *", executor_kind="local", executor_config=local())
    refusal(caught, Reason.INVALID_JOB, "name")


async def test_duplicate_name_is_refused(service: JobService) -> None:
    await service.add("once", "* * * * *", executor_kind="local", executor_config=local())
    with pytest.raises(SchedulerAlreadyExists) as caught:
        await service.add("once", "@daily", executor_kind="local", executor_config=local())
    refusal(caught, Reason.JOB_EXISTS, "name")
    assert (await service.get("once")).cron == "* * * * *"


async def test_unknown_job_is_not_found(service: JobService) -> None:
    for call in (service.get, service.pause, service.resume, service.run_now, service.history):
        with pytest.raises(SchedulerNotFound) as caught:
            await call("ghost")
        refusal(caught, Reason.JOB_NOT_FOUND, "name")


async def test_pause_resume_and_run_now(
    service: JobService,
    units_factory: Callable[[], Units],
    registry: ExecutorRegistry,
    clock: FakeClock,
) -> None:
    scheduler = Scheduler(units_factory(), registry, instance="s1", clock=clock)
    await service.add("hourly", "0 * * * *", executor_kind="local", executor_config=local())
    await service.pause("hourly")
    clock.advance(3 * 3600 * 1000)
    assert (await service.get("hourly")).status is JobStatus.PAUSED
    assert await scheduler.tick() is None  # paused: never taken, however late

    # resuming skips what was missed while paused: due at the next hour after now
    clock.advance(10 * 60 * 1000)
    await service.resume("hourly")
    job = await service.get("hourly")
    assert job.status is JobStatus.ACTIVE
    assert job.next_run_ms == T0_MS + 4 * 3600 * 1000
    assert await scheduler.tick() is None

    await service.run_now("hourly")
    report = await scheduler.tick()
    assert report is not None
    assert report.outcome is Outcome.OK
    assert (await service.get("hourly")).next_run_ms == T0_MS + 4 * 3600 * 1000


async def test_history_newest_first_and_retention(
    service: JobService,
    units_factory: Callable[[], Units],
    registry: ExecutorRegistry,
    clock: FakeClock,
) -> None:
    retention = SchedulerOptions(retention_ms=7 * DAY_MS)
    scheduler = Scheduler(units_factory(), registry, instance="s1", clock=clock, options=retention)
    await service.add("daily", "0 0 * * *", executor_kind="local", executor_config=local())
    for _ in range(10):
        clock.advance(DAY_MS)
        report = await scheduler.tick()
        assert report is not None
        assert report.outcome is Outcome.OK
    runs = await service.history("daily")
    assert [run.token for run in runs] == list(range(10, 0, -1))
    assert all(run.instance == "s1" and run.outcome is Outcome.OK for run in runs)
    assert all(run.ended_ms is not None and run.ended_ms >= run.started_ms for run in runs)
    assert [run.token for run in await service.history("daily", limit=3)] == [10, 9, 8]
    with pytest.raises(SchedulerInvalidArgument):
        await service.history("daily", limit=501)

    # run n started on day n; now is day 10: runs started more than 7 days ago (days 1
    # and 2) go, the one exactly 7 days old stays
    assert await scheduler.purge_history() == 2
    assert [run.token for run in await service.history("daily")] == list(range(10, 2, -1))
    assert await scheduler.purge_history() == 0
    assert await service.purge_history(older_than_ms=DAY_MS) == 6
    assert [run.token for run in await service.history("daily")] == [10, 9]
    with pytest.raises(SchedulerInvalidArgument):
        await service.purge_history(older_than_ms=0)


RUN_RANKING = "webook.ranking.v1.RankingService/RunRanking"
HTTP_JOB = {"url": "https://hooks.example.com:8443/export", "timeout_s": 30, "retries": 0}


async def test_remote_jobs_are_stored_as_given(service: JobService) -> None:
    http = await service.add("hook", "@hourly", executor_kind="http", executor_config=HTTP_JOB)
    assert (http.executor_kind, http.executor_config) == ("http", HTTP_JOB)
    declared = {"service": "ranking", "method": RUN_RANKING, "timeout_s": 120}
    grpc_job = await service.add(
        "ranking.refresh", "*/5 * * * *", executor_kind="grpc", executor_config=declared
    )
    assert (grpc_job.executor_kind, grpc_job.executor_config) == ("grpc", declared)
    # The request is the JSON form of the input message; a leading slash is accepted.
    full = {"service": "ranking", "method": "/" + RUN_RANKING, "request": {"fencingToken": "1"}}
    await service.add("r2", "@daily", executor_kind="grpc", executor_config=full)
    assert [job.name for job in await service.list()] == ["hook", "r2", "ranking.refresh"]


INVALID, UNKNOWN = Reason.INVALID_JOB, Reason.UNKNOWN_EXECUTOR


@pytest.mark.parametrize(
    ("config", "reason", "key", "says"),
    [
        ({}, INVALID, "url", "'url' is required"),
        ({"url": "ftp://files.example.com/x"}, INVALID, "url", "http:// or https://"),
        ({"url": "http:///path-only"}, INVALID, "url", "with a host"),
        ({"url": "http://h:99999/"}, INVALID, "url", "not a valid URL"),
        ({"url": "http://h/a b"}, INVALID, "url", "without spaces"),
        ({"url": "http://h/", "timeout_s": 0}, INVALID, "timeout_s", "0 < timeout_s <= 300"),
        ({"url": "http://h/", "timeout_s": 301}, INVALID, "timeout_s", "0 < timeout_s <= 300"),
        ({"url": "http://h/", "timeout_s": "9"}, INVALID, "timeout_s", "number of seconds"),
        ({"url": "http://h/", "retries": 6}, INVALID, "retries", "0..5"),
        ({"url": "http://h/", "retries": -1}, INVALID, "retries", "0..5"),
        ({"url": "http://h/", "retries": 1.5}, INVALID, "retries", "integer"),
        ({"url": "http://h/", "body": [1]}, INVALID, "body", "JSON object"),
        ({"url": "http://h/", "retry": 1}, INVALID, "retry", "unknown key(s) 'retry'"),
    ],
)
async def test_bad_http_configs_are_refused_naming_the_key(
    service: JobService, config: dict[str, Any], reason: Reason, key: str, says: str
) -> None:
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("hook", "@hourly", executor_kind="http", executor_config=config)
    message = refusal(caught, reason, "executor_config")
    assert caught.value.metadata["config_field"] == key
    assert message.startswith("http executor config: ")
    assert says in message
    assert await service.list() == []


def grpc(**config: Any) -> dict[str, Any]:
    """A grpc job's config calling RunRanking, with ``config`` laid over."""
    return {"service": "ranking", "method": RUN_RANKING, **config}


@pytest.mark.parametrize(
    ("config", "reason", "key", "says"),
    [
        ({"method": RUN_RANKING}, INVALID, "service", "'service' is required"),
        (grpc(service="Ranking Service"), INVALID, "service", "'service' is required"),
        (grpc(method="RunRanking"), INVALID, "method", "<full proto service>/<method>"),
        (grpc(method="webook.nope.v1.NopeService/Run"), UNKNOWN, "method", "no proto service"),
        (
            grpc(method="webook.ranking.v1.RankingService/Rerank"),
            UNKNOWN,
            "method",
            "has no method 'Rerank' (methods: RunRanking, TopArticles)",
        ),
        (
            # Declared for the gateway only: the scheduler could not call it under mTLS.
            grpc(method="webook.ranking.v1.RankingService/TopArticles"),
            INVALID,
            "method",
            "does not admit the scheduler as a caller",
        ),
        (
            grpc(method="webook.scheduler.v1.SchedulerService/ListJobs"),
            INVALID,
            "method",
            "admits: operator",
        ),
        (grpc(request={"no_such_field": 1}), INVALID, "request", "RunRankingRequest"),
        (grpc(request={"fencing_token": "x"}), INVALID, "request", "RunRankingRequest"),
        (grpc(request="fencing_token=1"), INVALID, "request", "JSON object"),
        (grpc(timeout_s=3601), INVALID, "timeout_s", "0 < timeout_s <= 3600"),
        (grpc(timeout_s=True), INVALID, "timeout_s", "number of seconds"),
        (grpc(url="http://h/"), INVALID, "url", "unknown key(s) 'url'"),
    ],
)
async def test_bad_grpc_configs_are_refused_naming_the_key(
    service: JobService, config: dict[str, Any], reason: Reason, key: str, says: str
) -> None:
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await service.add("rank", "@hourly", executor_kind="grpc", executor_config=config)
    message = refusal(caught, reason, "executor_config")
    assert caught.value.metadata["config_field"] == key
    assert message.startswith("grpc executor config: ")
    assert says in message
    assert await service.list() == []
