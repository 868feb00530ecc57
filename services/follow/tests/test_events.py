"""``UserFollowed`` is recorded in the follow's own transaction, once per new follow.

The production storage wiring (SQL units of work with the ``follow_outbox``, the Redis
counts cache) on SQLite and MariaDB: a first follow and a follow taken up again after a
cancel each record one event keyed by the followee; a repeated follow, a cancel and a
refused follow record none; a transaction rolled back takes its event with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.errors import InvalidArgument
from kit.outbox import Outbox
from kit.sql import SessionFactory, create_engine, session_factory
from services.follow.events import USER_FOLLOWED
from services.follow.repository import SqlUnitOfWork, follow_outbox
from services.follow.repository.cache import FollowStatsCache
from services.follow.repository.dao import FollowOutboxRow
from services.follow.service import FollowService
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

FAN = 11
AUTHOR = 22


@dataclass
class FollowStack:
    """The service over the test database, with what a test looks at."""

    service: FollowService
    engine: AsyncEngine
    sessions: SessionFactory
    cache: FollowStatsCache
    outbox: Outbox

    def unit(self) -> SqlUnitOfWork:
        """A unit of work as the service gets them."""
        return SqlUnitOfWork(self.sessions, self.cache, self.outbox)

    async def followed_events(self) -> list[events_pb2.UserFollowed]:
        """The ``UserFollowed`` events recorded in the outbox, in order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        FollowOutboxRow.topic, FollowOutboxRow.event_key, FollowOutboxRow.payload
                    ).order_by(FollowOutboxRow.id)
                )
            ).all()
        events = []
        for topic, key, payload in rows:
            assert topic == USER_FOLLOWED.name
            event = events_pb2.UserFollowed.FromString(payload)
            assert key == str(event.followee)
            events.append(event)
        return events


@pytest.fixture
async def stack(database_url: str, redis_client: aioredis.Redis) -> AsyncIterator[FollowStack]:
    """The follow service over the migrated test database."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    holder = FollowStack(
        service=FollowService(lambda: holder.unit()),
        engine=engine,
        sessions=sessions,
        cache=FollowStatsCache(redis_client),
        outbox=follow_outbox(),
    )
    try:
        yield holder
    finally:
        await engine.dispose()


async def test_a_new_follow_records_one_event_keyed_by_the_followee(stack: FollowStack) -> None:
    assert await stack.service.follow(FAN, AUTHOR)

    [event] = await stack.followed_events()
    assert (event.follower, event.followee) == (FAN, AUTHOR)
    assert event.at_ms > 0


async def test_repeats_cancels_and_refusals_record_nothing(stack: FollowStack) -> None:
    await stack.service.follow(FAN, AUTHOR)
    assert not await stack.service.follow(FAN, AUTHOR)
    assert await stack.service.cancel(FAN, AUTHOR)
    assert not await stack.service.cancel(FAN, AUTHOR)
    with pytest.raises(InvalidArgument):
        await stack.service.follow(FAN, FAN)

    assert len(await stack.followed_events()) == 1


async def test_following_again_after_a_cancel_is_a_new_follow(stack: FollowStack) -> None:
    await stack.service.follow(FAN, AUTHOR)
    await stack.service.cancel(FAN, AUTHOR)
    assert await stack.service.follow(FAN, AUTHOR)

    assert [(e.follower, e.followee) for e in await stack.followed_events()] == [
        (FAN, AUTHOR),
        (FAN, AUTHOR),
    ]


async def test_the_event_shares_the_fate_of_the_follow(stack: FollowStack) -> None:
    async with stack.unit() as uow:
        assert await uow.follows.follow(FAN, AUTHOR, now_ms=1)
        uow.events.user_followed(FAN, AUTHOR, at_ms=1)
        # Left without a commit: rolled back, relation and event alike.

    assert await stack.followed_events() == []
    status = await stack.service.relation(FAN, AUTHOR)
    assert not status.following
