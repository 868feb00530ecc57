"""Fixtures of the scheduler's tests: a migrated database, instances on their own engines,
and a clock the test moves.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the scheduler tables emptied first, since tests share it).
``units_factory`` opens one engine per call, as separate scheduler processes would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrations import migrated_and_emptied
from kit.sql import create_engine, session_factory
from services.scheduler.repository import SqlUnitOfWork
from services.scheduler.repository.dao import Base

# 2026-01-01T00:00:00Z: a Thursday.
T0_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)

Units = Callable[[], SqlUnitOfWork]


class FakeClock:
    """Epoch milliseconds that move only when the test says so."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move the clock ``ms`` milliseconds ahead."""
        self.now_ms += ms


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated scheduler database with empty scheduler tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("scheduler", empty_database_url, Base.metadata)


@pytest.fixture
async def units_factory(database_url: str) -> AsyncIterator[Callable[[], Units]]:
    """Each call: a unit-of-work factory over a new engine (disposed after the test)."""
    engines: list[AsyncEngine] = []

    def open_units() -> Units:
        engine = create_engine(database_url)
        engines.append(engine)
        sessions = session_factory(engine)
        return lambda: SqlUnitOfWork(sessions)

    yield open_units
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A clock at :data:`T0_MS`."""
    return FakeClock()
