"""A job row locked by a transaction that does not end (an instance frozen mid-renewal)
must not stall the other instances: their take gives up on that row after the scheduler's
lock-wait timeout and takes the other due jobs (MariaDB; SQLite has no row locks)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.migrations import migrated_and_emptied
from kit.sql import create_engine, session_factory
from services.scheduler.__main__ import LOCK_WAIT_TIMEOUT_S
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.repository import SqlUnitOfWork
from services.scheduler.repository.dao import Base
from services.scheduler.scheduler import Scheduler, SchedulerOptions
from services.scheduler.service import JobService
from services.scheduler.tests.conftest import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


async def test_a_row_locked_by_a_stuck_transaction_is_skipped(mysql_url: str) -> None:
    url = await migrated_and_emptied("scheduler", mysql_url, Base.metadata)
    engine = create_engine(url, lock_wait_timeout_s=LOCK_WAIT_TIMEOUT_S)
    blocker = create_engine(url)
    try:
        async with engine.connect() as connection:
            wait = await connection.scalar(text("SELECT @@SESSION.innodb_lock_wait_timeout"))
        assert wait == LOCK_WAIT_TIMEOUT_S
        sessions = session_factory(engine)

        def units() -> SqlUnitOfWork:
            return SqlUnitOfWork(sessions)

        clock = FakeClock()
        registry = ExecutorRegistry()
        registry.register("noop", _noop)
        service = JobService(units, registry, clock=clock)
        for name in ("frozen", "free"):
            job = await service.add(
                name, "* * * * *", executor_kind="local", executor_config={"function": "noop"}
            )
        clock.now_ms = job.next_run_ms
        scheduler = Scheduler(
            units, registry, instance="s", clock=clock, options=SchedulerOptions()
        )
        frozen = await service.get("frozen")

        async with blocker.connect() as held:
            # a transaction that holds the row's lock and never ends (until the test's end)
            await held.execute(
                text("SELECT id FROM scheduler_jobs WHERE id = :id FOR UPDATE"), {"id": frozen.id}
            )
            lease = await scheduler.take()
            assert lease is not None
            assert lease.job.name == "free"
            # the locked job is skipped, not waited for (InnoDB's default is 50 s, retried)
            assert await scheduler.take() is None
            await held.rollback()
        lease = await scheduler.take()
        assert lease is not None
        assert lease.job.name == "frozen"
    finally:
        await engine.dispose()
        await blocker.dispose()


async def _noop(_context: object) -> None:
    """Nothing to do."""
