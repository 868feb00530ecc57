"""Fixtures of the reward service's tests: a migrated database and the service over it.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the reward tables emptied first, since tests share it).
``stack`` is the production storage wiring (SQL units of work, the outbox) with the peers
in memory (:mod:`services.reward.tests.fakes`) and a clock the test moves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrations import migrated_and_emptied
from kit.sql import create_engine, session_factory
from services.reward.domain import AmountBounds
from services.reward.events import REWARD_PAID
from services.reward.repository import SqlUnitOfWork, reward_outbox
from services.reward.repository.dao import Base, RewardOutboxRow
from services.reward.service import RewardService
from services.reward.tests.fakes import FakeArticles, FakePayments
from webook.reward.v1 import reward_pb2

AUTHOR = 7
ARTICLE = 70
REPAIR_AFTER_MS = 60_000
T0 = 1_800_000_000_000


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated reward database with empty reward tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("reward", empty_database_url, Base.metadata)


@dataclass
class Clock:
    """Wall-clock milliseconds a test sets."""

    now_ms: int = T0

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class RewardStack:
    """The service with what a test looks at and changes around it."""

    service: RewardService
    engine: AsyncEngine
    articles: FakeArticles
    payments: FakePayments
    clock: Clock
    bounds: AmountBounds

    async def paid_events(self) -> list[reward_pb2.RewardPaid]:
        """The ``RewardPaid`` events recorded in the outbox, in order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        RewardOutboxRow.topic, RewardOutboxRow.event_key, RewardOutboxRow.payload
                    ).order_by(RewardOutboxRow.id)
                )
            ).all()
        events = []
        for topic, key, payload in rows:
            assert topic == REWARD_PAID.name
            event = reward_pb2.RewardPaid.FromString(payload)
            assert key == str(event.rid)
            events.append(event)
        return events


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[RewardStack]:
    """The reward service over the test database, article 70 published by user 7."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    outbox = reward_outbox()
    articles = FakeArticles({ARTICLE: AUTHOR})
    payments = FakePayments()
    clock = Clock()
    holder = RewardStack(
        service=RewardService(
            lambda: SqlUnitOfWork(sessions, outbox),
            articles=articles,
            payments=payments,
            bounds=lambda: holder.bounds,
            repair_after_ms=lambda: REPAIR_AFTER_MS,
            clock=clock,
        ),
        engine=engine,
        articles=articles,
        payments=payments,
        clock=clock,
        bounds=AmountBounds(min_fen=1, max_fen=100_000),
    )
    try:
        yield holder
    finally:
        await engine.dispose()
