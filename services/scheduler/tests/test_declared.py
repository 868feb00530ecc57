"""Declared jobs on SQLite and MariaDB: absent ones are added through the job service,
existing ones are kept as stored, and instances starting together all start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from kit.config import Mode
from services.scheduler.__main__ import build_runner
from services.scheduler.builtins import register_builtins
from services.scheduler.cron import parse
from services.scheduler.declared import DeclaredJobs, apply_declared
from services.scheduler.domain import Job, JobStatus
from services.scheduler.errors import Reason, SchedulerInvalidArgument
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.service import JobService
from services.scheduler.settings import DeclaredJob, SchedulerSettings
from services.scheduler.tests.conftest import T0_MS, FakeClock, Units

pytestmark = pytest.mark.integration

# Instances starting at once in the race test.
INSTANCES = 5
# Bounds a hang on a loaded machine only.
START_S = 60.0


def declared(name: str, cron: str = "*/5 * * * *", **fields: Any) -> DeclaredJob:
    """A declared ``log`` job."""
    return DeclaredJob(
        name=name,
        cron=cron,
        executor_kind=fields.pop("executor_kind", "local"),
        executor_config=fields.pop("executor_config", {"function": "log", "message": name}),
        **fields,
    )


def job_service(units: Units, clock: FakeClock) -> JobService:
    """The job service of one instance, with the built-in executors."""
    return JobService(units, register_builtins(ExecutorRegistry()), clock=clock)


@pytest.fixture
def service(units_factory: Callable[[], Units], clock: FakeClock) -> JobService:
    """The job service of one instance on the test database."""
    return job_service(units_factory(), clock)


def kept_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The "kept as stored" lines logged."""
    return [r for r in caplog.records if r.getMessage() == "declared job exists: kept as stored"]


async def test_absent_jobs_are_added_as_declared(service: JobService) -> None:
    jobs = [
        declared("ranking.refresh"),
        declared("quiet", "@daily", executor_config={"function": "noop"}, paused=True),
    ]
    assert await apply_declared(service, jobs) == ["ranking.refresh", "quiet"]

    refresh = await service.get("ranking.refresh")
    assert (refresh.cron, refresh.executor_kind, refresh.status) == (
        "*/5 * * * *",
        "local",
        JobStatus.ACTIVE,
    )
    assert refresh.executor_config == {"function": "log", "message": "ranking.refresh"}
    assert refresh.next_run_ms == parse("*/5 * * * *").next_after_ms(T0_MS)
    quiet = await service.get("quiet")
    assert (quiet.status, quiet.executor_config) == (JobStatus.PAUSED, {"function": "noop"})
    assert [j.name for j in await service.list()] == ["quiet", "ranking.refresh"]


async def test_applying_again_adds_nothing(service: JobService, clock: FakeClock) -> None:
    jobs = [declared("a"), declared("b")]
    assert await apply_declared(service, jobs) == ["a", "b"]
    before = await service.list()
    clock.advance(3_600_000)
    assert await apply_declared(service, jobs) == []
    assert await service.list() == before


async def test_an_existing_job_is_never_changed(
    service: JobService, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator's version of the job: another cron and config, then paused.
    await service.add(
        "ranking.refresh", "@hourly", executor_kind="local", executor_config={"function": "noop"}
    )
    await service.pause("ranking.refresh")
    stored = await service.get("ranking.refresh")
    clock.advance(60_000)

    with caplog.at_level(logging.INFO, logger="services.scheduler.declared"):
        added = await apply_declared(service, [declared("ranking.refresh"), declared("other")])
    assert added == ["other"]
    assert await service.get("ranking.refresh") == stored
    (kept,) = kept_records(caplog)
    assert kept.__dict__["job"] == "ranking.refresh"
    assert kept.__dict__["differs_in"] == ["cron", "executor_config"]
    assert kept.__dict__["added_concurrently"] is False


async def test_a_refused_definition_fails_and_adds_nothing_of_it(service: JobService) -> None:
    # The settings cannot know which functions the process registers: the service does.
    missing = declared("ghost", executor_config={"function": "not-registered"})
    with pytest.raises(SchedulerInvalidArgument) as caught:
        await apply_declared(service, [missing])
    assert caught.value.reason == Reason.UNKNOWN_EXECUTOR
    assert await service.list() == []


class LateLooker(JobService):
    """An instance that looks for the job just before a rival instance adds it.

    Its first :meth:`get` finds nothing, and the rival applies the same declarations right
    after that look: the caller's insert then meets the rival's job.
    """

    def __init__(
        self, units: Units, clock: FakeClock, rival: JobService, jobs: Sequence[DeclaredJob]
    ) -> None:
        super().__init__(units, register_builtins(ExecutorRegistry()), clock=clock)
        self._rival: JobService | None = rival
        self._jobs = jobs

    async def get(self, name: str) -> Job:
        rival, self._rival = self._rival, None
        try:
            return await super().get(name)
        finally:
            if rival is not None:
                assert await apply_declared(rival, self._jobs) == [name]


async def test_an_insert_losing_the_race_keeps_the_winners_job(
    units_factory: Callable[[], Units], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [declared("ranking.refresh")]
    rival = job_service(units_factory(), clock)
    late = LateLooker(units_factory(), clock, rival, jobs)
    with caplog.at_level(logging.INFO, logger="services.scheduler.declared"):
        assert await apply_declared(late, jobs) == []
    (kept,) = kept_records(caplog)
    assert kept.__dict__["added_concurrently"] is True
    assert kept.__dict__["differs_in"] == []
    assert [j.name for j in await rival.list()] == ["ranking.refresh"]


async def test_instances_starting_together_all_start_and_add_each_job_once(
    units_factory: Callable[[], Units], clock: FakeClock
) -> None:
    jobs = [declared(f"job-{i}") for i in range(4)]
    # One engine per instance, as separate processes have.
    instances = [DeclaredJobs(job_service(units_factory(), clock), jobs) for _ in range(INSTANCES)]
    await asyncio.wait_for(asyncio.gather(*(i.start() for i in instances)), START_S)
    added = sorted(name for instance in instances for name in instance.added)
    assert added == [job.name for job in jobs]
    listed = await job_service(units_factory(), clock).list()
    assert [j.name for j in listed] == [job.name for job in jobs]
    for instance in instances:
        instance.stop()


async def test_the_scheduler_process_adds_its_declared_jobs_at_start(database_url: str) -> None:
    settings = SchedulerSettings(
        mode=Mode.TEST,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        database_url=database_url,
        instance_id="declared-test",
        jobs=[declared("beat", "@hourly", executor_config={"function": "noop"})],
    )
    runner = build_runner(settings)
    await asyncio.wait_for(runner.start(), START_S)
    try:
        assert runner.component(DeclaredJobs).added == ["beat"]
    finally:
        await runner.stop()
