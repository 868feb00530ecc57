"""The in-process counts and flags (``LocalCounts``) across replicas sharing one Redis.

Each "replica" is a service with its own Redis client, ``CountsCache`` and ``LocalCounts``
(its own subscription) on the same SQL database and Redis, as two processes would be.
Deliveries are awaited by polling with a timeout; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from clients.tests.articles import FakeTargets
from devstack.infra import ManagedProcess
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.interactive.domain import Counts, Flags, Interactive
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import (
    CACHE_NAME,
    LOCAL_CACHE_NAME,
    LOCAL_FLAGS_CACHE_NAME,
    CountsCache,
    LocalCounts,
    counts_key,
)
from services.interactive.service import InteractiveService
from services.interactive.tests.stack import started_local, wait_until_fresh

ARTICLE = "article"
DELIVERY_TIMEOUT_S = 10.0


@dataclass
class Replica:
    """One process's worth of wiring."""

    service: InteractiveService
    cache: CountsCache
    local: LocalCounts
    redis: aioredis.Redis


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The shared SQL database."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def replica(
    engine: AsyncEngine, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[ReplicaFactory]:
    """Makes replicas on the shared SQL database and the (flushed) Redis."""
    sessions = session_factory(engine)
    async with AsyncExitStack() as stack:

        async def make(**options: int | float) -> Replica:
            redis = create_redis(redis_url)
            stack.push_async_callback(redis.aclose, close_connection_pool=True)
            local = await started_local(redis, **options)
            stack.push_async_callback(local.aclose)
            cache = CountsCache(redis, local=local)
            service = InteractiveService(
                lambda: SqlUnitOfWork(sessions, cache), targets=FakeTargets(), cached=cache
            )
            return Replica(service=service, cache=cache, local=local, redis=redis)

        yield make


def requests(cache: str, result: str) -> float:
    """The current value of ``webook_cache_requests_total{cache, result}``."""
    value = REGISTRY.get_sample_value(
        "webook_cache_requests_total", {"cache": cache, "result": result}
    )
    return value or 0.0


async def eventually(read: Callable[[], Awaitable[Any]], expected: Any) -> None:
    """Poll ``read`` until it answers ``expected``."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while (got := await read()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {got!r}, expected {expected!r}")
        await asyncio.sleep(0.01)


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.01)


def seen(intr: Interactive) -> tuple[Counts, bool, bool]:
    """What a reader sees."""
    return intr.counts, intr.liked, intr.collected


async def in_memory(r: Replica, biz_id: int, uid: int) -> tuple[Counts | None, Flags | None]:
    """Get through ``r``, then what ``r`` holds in memory for it."""
    await r.service.get(ARTICLE, biz_id, uid)
    flags = r.local.flags.get((ARTICLE, biz_id, uid)) if uid > 0 else None
    return r.local.counts.get((ARTICLE, biz_id)), flags


async def seen_of(r: Replica, biz_id: int, uid: int) -> tuple[Counts, bool, bool]:
    """What a reader sees through replica ``r``."""
    return seen(await r.service.get(ARTICLE, biz_id, uid))


async def test_a_hot_get_is_answered_from_memory(replica: ReplicaFactory) -> None:
    a = await replica()
    await a.service.like(ARTICLE, 1, 7)
    await a.service.add_reads(ARTICLE, {1: 3})
    # Loads from SQL into Redis, then from Redis into memory (announcements of the fills
    # may drop a copy once): after a few calls both parts are in memory.
    await eventually(lambda: in_memory(a, 1, 7), (Counts(3, 1, 0), Flags(True, False)))
    redis_before = requests(CACHE_NAME, "hit") + requests(CACHE_NAME, "miss")
    local_before = requests(LOCAL_CACHE_NAME, "hit"), requests(LOCAL_FLAGS_CACHE_NAME, "hit")
    for _ in range(50):
        assert seen(await a.service.get(ARTICLE, 1, 7)) == (Counts(3, 1, 0), True, False)
        assert seen(await a.service.get(ARTICLE, 1, 0)) == (Counts(3, 1, 0), False, False)
    assert requests(CACHE_NAME, "hit") + requests(CACHE_NAME, "miss") == redis_before
    assert requests(LOCAL_CACHE_NAME, "hit") == local_before[0] + 100
    assert requests(LOCAL_FLAGS_CACHE_NAME, "hit") == local_before[1] + 50


async def test_writes_on_one_replica_reach_the_memory_of_another(
    replica: ReplicaFactory,
) -> None:
    a, b = await replica(), await replica()
    await a.service.add_reads(ARTICLE, {2: 5})
    await eventually(lambda: in_memory(b, 2, 9), (Counts(5, 0, 0), Flags()))
    before = (Counts(5, 0, 0), False, False)
    steps: list[tuple[Callable[[], Awaitable[object]], Counts, bool, bool]] = [
        (lambda: a.service.like(ARTICLE, 2, 9), Counts(5, 1, 0), True, False),
        (lambda: a.service.collect(ARTICLE, 2, 9, 0), Counts(5, 1, 1), True, True),
        (lambda: a.service.add_reads(ARTICLE, {2: 4}), Counts(9, 1, 1), True, True),
        (lambda: a.service.cancel_like(ARTICLE, 2, 9), Counts(9, 0, 1), False, True),
        (lambda: a.service.cancel_collect(ARTICLE, 2, 9), Counts(9, 0, 0), False, False),
    ]
    for write, counts, liked, collected in steps:
        # B holds both parts in memory before A writes.
        await eventually(lambda: in_memory(b, 2, 9), (before[0], Flags(*before[1:])))
        await write()
        await eventually(lambda: seen_of(b, 2, 9), (counts, liked, collected))
        # And it stays right once memory holds it again.
        for _ in range(3):
            assert seen(await b.service.get(ARTICLE, 2, 9)) == (counts, liked, collected)
        before = (counts, liked, collected)


async def test_a_change_reaches_memory_even_when_redis_lost_the_hash(
    replica: ReplicaFactory,
) -> None:
    a, b = await replica(), await replica()
    await a.service.add_reads(ARTICLE, {3: 1})
    await eventually(lambda: in_memory(b, 3, 0), (Counts(1, 0, 0), None))
    # The hash expires in Redis (not announced); B's copy lives on. The next read batch
    # finds no hash to increment, and still announces the change.
    await a.redis.delete(counts_key(ARTICLE, 3))
    await a.service.add_reads(ARTICLE, {3: 2})
    await eventually(lambda: seen_of(b, 3, 0), (Counts(3, 0, 0), False, False))


async def test_a_value_read_before_an_announcement_is_not_kept(
    replica: ReplicaFactory, engine: AsyncEngine
) -> None:
    a, b = await replica(), await replica()
    await a.service.like(ARTICLE, 4, 9)
    await b.service.get(ARTICLE, 4, 9)  # counts and flags in Redis
    b.local.clear()
    read_redis = b.cache._lookup_redis  # the race is inside lookup

    async def read_then_change(biz: str, biz_id: int, uid: int) -> Any:
        # B reads Redis; before its answer is used, A cancels the like and B processes the
        # announcement.
        answer = await read_redis(biz, biz_id, uid)
        epochs = b.local.counts.ticket(), b.local.flags.ticket()
        await a.service.cancel_like(ARTICLE, 4, 9)
        await until(
            lambda: b.local.counts.ticket() > epochs[0] and b.local.flags.ticket() > epochs[1]
        )
        return answer

    b.cache._lookup_redis = read_then_change  # type: ignore[method-assign]
    stale = await b.service.get(ARTICLE, 4, 9)
    assert seen(stale) == (Counts(0, 1, 0), True, False)  # what Redis said when it was read
    b.cache._lookup_redis = read_redis  # type: ignore[method-assign]
    assert len(b.local.counts) == len(b.local.flags) == 0  # the stale answer was not kept
    for _ in range(3):
        assert await seen_of(b, 4, 9) == (Counts(0, 0, 0), False, False)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT COUNT(*) FROM user_likes")) == 0


async def test_without_a_fresh_feed_lookups_go_to_redis(replica: ReplicaFactory) -> None:
    a, b = await replica(), await replica()
    await a.service.like(ARTICLE, 5, 9)
    await eventually(lambda: seen_of(b, 5, 9), (Counts(0, 1, 0), True, False))
    await b.service.get(ARTICLE, 5, 9)
    await b.local.aclose()  # the feed stops: nothing is answered from memory any more
    assert not b.local.feed.fresh
    assert len(b.local.counts) == len(b.local.flags) == 0
    redis_hits = requests(CACHE_NAME, "hit")
    local_hits = requests(LOCAL_CACHE_NAME, "hit")
    await a.service.cancel_like(ARTICLE, 5, 9)
    for _ in range(5):
        assert await seen_of(b, 5, 9) == (Counts(0, 0, 0), False, False)
    assert requests(CACHE_NAME, "hit") == redis_hits + 5
    assert requests(LOCAL_CACHE_NAME, "hit") == local_hits
    assert len(b.local.counts) == 0


async def test_redis_down_empties_memory_and_falls_back_to_sql(
    replica: ReplicaFactory, redis_server: ManagedProcess
) -> None:
    a = await replica()
    await a.service.like(ARTICLE, 6, 9)
    await eventually(lambda: seen_of(a, 6, 9), (Counts(0, 1, 0), True, False))
    await a.service.get(ARTICLE, 6, 9)
    assert len(a.local.counts) == 1
    await asyncio.to_thread(redis_server.stop)
    try:
        await wait_until_fresh(a.local, fresh=False)
        assert len(a.local.counts) == len(a.local.flags) == 0
        await a.service.cancel_like(ARTICLE, 6, 9)
        assert await seen_of(a, 6, 9) == (Counts(0, 0, 0), False, False)
    finally:
        await asyncio.to_thread(redis_server.start)
    await wait_until_fresh(a.local)
    await eventually(lambda: in_memory(a, 6, 9), (Counts(0, 0, 0), Flags()))


async def test_memory_is_bounded(replica: ReplicaFactory) -> None:
    a = await replica(counts_entries=5, flags_entries=8)
    for biz_id in range(1, 21):
        for uid in range(1, 4):
            await a.service.get(ARTICLE, biz_id, uid)
            await a.service.get(ARTICLE, biz_id, uid)
    assert 0 < len(a.local.counts) <= 5
    assert 0 < len(a.local.flags) <= 8
