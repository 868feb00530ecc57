"""Fixtures of the tag service's tests: a migrated database and replicas of the service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the tag tables emptied first, since tests share it).
``stack`` is the production storage wiring (SQL units of work, the outbox) with the article
service in memory (:mod:`services.tag.tests.fakes`) and a clock the test moves;
``stack.replica()`` is another process's service over the same database, with a cache of
its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrations import migrated_and_emptied
from kit.outbox import Outbox
from kit.sql import SessionFactory, create_engine, session_factory
from services.tag.cache import TagCache
from services.tag.domain import TagLimits
from services.tag.events import TAGS_CHANGED
from services.tag.repository import SqlUnitOfWork, tag_outbox
from services.tag.repository.dao import Base, TagOutboxRow
from services.tag.service import TagService
from services.tag.tests.fakes import FakeArticleOwners

AUTHOR = 7
OTHER = 8
ARTICLE = 70
OTHERS_ARTICLE = 80
T0 = 1_800_000_000_000
DAY_MS = 86_400_000


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated tag database with empty tag tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("tag", empty_database_url, Base.metadata)


@dataclass
class Clock:
    """Wall-clock milliseconds a test sets."""

    now_ms: int = T0

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class TagStack:
    """The service with what a test looks at and changes around it."""

    engine: AsyncEngine
    sessions: SessionFactory
    outbox: Outbox
    owners: FakeArticleOwners
    clock: Clock
    limits: TagLimits = field(default_factory=lambda: TagLimits(per_user=50, per_resource=5))
    cache: TagCache = field(init=False)
    service: TagService = field(init=False)

    def __post_init__(self) -> None:
        self.service, self.cache = self.replica()

    def replica(self) -> tuple[TagService, TagCache]:
        """Another process's service over the same database: a cache of its own."""
        cache = TagCache(max_users=100, max_resources=100, max_age_s=3600)
        service = TagService(
            lambda: SqlUnitOfWork(self.sessions, self.outbox),
            owners=self.owners,
            cache=cache,
            limits=lambda: self.limits,
            clock=self.clock,
        )
        return service, cache

    async def events(self) -> list[tuple[str, bytes]]:
        """The ``TagsChanged`` events recorded in the outbox, in order: (key, value)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        TagOutboxRow.topic, TagOutboxRow.event_key, TagOutboxRow.payload
                    ).order_by(TagOutboxRow.id)
                )
            ).all()
        assert all(topic == TAGS_CHANGED.name for topic, _, _ in rows)
        return [(key, payload) for _, key, payload in rows]


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[TagStack]:
    """The tag service over the test database; article 70 by user 7, article 80 by user 8."""
    engine = create_engine(database_url)
    holder = TagStack(
        engine=engine,
        sessions=session_factory(engine),
        outbox=tag_outbox(),
        owners=FakeArticleOwners({ARTICLE: AUTHOR, OTHERS_ARTICLE: OTHER}),
        clock=Clock(),
    )
    try:
        yield holder
    finally:
        await engine.dispose()
