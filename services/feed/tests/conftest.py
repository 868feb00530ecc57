"""Fixtures of the feed service's tests: a migrated database and the service over it.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the feed tables emptied first, since tests share it).
``stack`` is the production storage wiring (SQL units of work) with the follow service in
memory (:class:`services.feed.tests.fakes.FakeFollowers`), a threshold and batch size the
test changes as an operator would change the live settings, and a clock the test moves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrations import migrated_and_emptied
from kit.sql import SessionFactory, create_engine, session_factory
from services.feed.domain import FeedEvent
from services.feed.repository import SqlUnitOfWork
from services.feed.repository.dao import Base, InboxRow
from services.feed.service import FeedService
from services.feed.tests.fakes import FakeFollowers

T0 = 1_800_000_000_000


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated feed database with empty feed tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("feed", empty_database_url, Base.metadata)


@dataclass
class Clock:
    """Wall-clock milliseconds a test sets."""

    now_ms: int = T0

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class FeedStack:
    """The service with what a test looks at and changes around it."""

    engine: AsyncEngine
    sessions: SessionFactory
    followers: FakeFollowers
    clock: Clock
    threshold: int = 3
    batch_size: int = 2

    def service(self, units: Callable[[], SqlUnitOfWork] | None = None) -> FeedService:
        """A feed service over the test database (``units``: another unit-of-work factory,
        e.g. one that fails on purpose)."""
        return FeedService(
            units or (lambda: SqlUnitOfWork(self.sessions)),
            followers=self.followers,
            big_author_followers=lambda: self.threshold,
            fanout_batch_size=lambda: self.batch_size,
            max_followees=1_000,
            clock=self.clock,
        )

    async def inbox_rows(self, owner: int | None = None) -> int:
        """How many inbox rows exist (of ``owner``, or in all)."""
        stmt = select(func.count()).select_from(InboxRow)
        if owner is not None:
            stmt = stmt.where(InboxRow.owner == owner)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def whole_feed(self, uid: int, limit: int = 3) -> list[FeedEvent]:
        """Every entry of ``uid``'s feed, read page by page."""
        service = self.service()
        events: list[FeedEvent] = []
        cursor = ""
        while True:
            page = await service.get_feed(uid, cursor, limit)
            events.extend(page.events)
            if not page.next_cursor:
                return events
            cursor = page.next_cursor


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[FeedStack]:
    """The feed service's storage over the test database, nobody following anyone yet."""
    engine = create_engine(database_url)
    try:
        yield FeedStack(
            engine=engine,
            sessions=session_factory(engine),
            followers=FakeFollowers(),
            clock=Clock(),
        )
    finally:
        await engine.dispose()
