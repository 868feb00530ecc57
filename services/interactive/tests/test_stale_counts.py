"""In-process counts while Redis is frozen (SIGSTOP) or stopped: the last copies answered
(stale, counted) without waiting on Redis, dropped once the feed is back.

Each test runs a Redis of its own (:mod:`kit.cache.tests.outage`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from devstack.infra import ManagedProcess
from kit.cache.tests.outage import (
    SOCKET_TIMEOUT_S,
    client_of,
    eventually,
    fed,
    frozen,
    own_redis,
    url_of,
)
from kit.redisx import create_redis, redis_health
from services.interactive.domain import Counts, Flags
from services.interactive.repository.cache import (
    LOCAL_CACHE_NAME,
    LOCAL_FEED_NAME,
    LOCAL_FLAGS_CACHE_NAME,
    CountsCache,
    LocalCounts,
)

pytestmark = pytest.mark.integration

BIZ = "article"
ID = 5
UID = 9


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagedProcess]:
    with own_redis(tmp_path) as proc:
        yield proc


@pytest.fixture
async def redis(server: ManagedProcess) -> AsyncIterator[aioredis.Redis]:
    async with client_of(server, "counts_stale") as client:
        yield client


@pytest.fixture
async def cache(redis: aioredis.Redis) -> AsyncIterator[CountsCache]:
    async with fed(LocalCounts(redis, stale_for=300.0)) as local:
        yield CountsCache(redis, local=local)


def _count(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def _stale_serves(name: str) -> float:
    return _count("webook_cache_stale_serves_total", cache=name)


def _local(cache: CountsCache) -> LocalCounts:
    assert cache.local is not None
    return cache.local


async def _kept_in_memory(cache: CountsCache, expected: tuple[Counts, Flags]) -> None:
    async def hit() -> bool:
        hits = _count("webook_cache_requests_total", cache=LOCAL_CACHE_NAME, result="hit")
        assert await cache.lookup(BIZ, ID, UID) == expected
        return _count("webook_cache_requests_total", cache=LOCAL_CACHE_NAME, result="hit") > hits

    await eventually(hit, "counts and flags kept in memory")


async def test_frozen_redis_answers_the_last_counts_then_refreshes(
    server: ManagedProcess, cache: CountsCache, redis: aioredis.Redis
) -> None:
    local = _local(cache)
    await cache.set_many(BIZ, {ID: Counts(10, 2, 1)})
    await cache.fill_flags(BIZ, ID, UID, Flags(liked=True))
    await _kept_in_memory(cache, (Counts(10, 2, 1), Flags(liked=True)))

    with frozen(server):
        await eventually(lambda: local.serving_stale, "lookups turn stale")
        counts_served = _stale_serves(LOCAL_CACHE_NAME)
        flags_served = _stale_serves(LOCAL_FLAGS_CACHE_NAME)
        started = time.monotonic()
        assert await cache.lookup(BIZ, ID, UID) == (Counts(10, 2, 1), Flags(liked=True))
        assert await cache.lookup(BIZ, ID + 1, 0) == (None, None)  # not kept: refused at once
        assert time.monotonic() - started < SOCKET_TIMEOUT_S
        assert _stale_serves(LOCAL_CACHE_NAME) - counts_served == 1
        assert _stale_serves(LOCAL_FLAGS_CACHE_NAME) - flags_served == 1
        await eventually(
            lambda: _count("webook_cache_invalidation_feed_up", feed=LOCAL_FEED_NAME) == 0,
            "the feed gives up its connection",
        )

    await eventually(lambda: local.feed.fresh, "the feed subscribes again")
    assert not local.serving_stale
    assert len(local.counts) == len(local.flags) == 0  # the stale copies were dropped
    # Another replica's change shows here again.
    other = CountsCache(redis)
    await other.set_many(BIZ, {ID: Counts(11, 2, 1)})

    async def changed_here() -> bool:
        return await cache.lookup(BIZ, ID, UID) == (Counts(11, 2, 1), Flags(liked=True))

    await eventually(changed_here, "the change reaches this replica")


async def test_stopped_redis_answers_the_last_counts(
    server: ManagedProcess, cache: CountsCache
) -> None:
    local = _local(cache)
    await cache.set_many(BIZ, {ID: Counts(3, 0, 0)})
    await cache.fill_flags(BIZ, ID, UID, Flags())
    await _kept_in_memory(cache, (Counts(3, 0, 0), Flags()))
    server.stop()
    try:
        await eventually(lambda: local.serving_stale, "lookups turn stale")
        assert await cache.lookup(BIZ, ID, UID) == (Counts(3, 0, 0), Flags())
    finally:
        server.start()
    await eventually(lambda: local.feed.fresh, "the feed subscribes again")
    assert await cache.lookup(BIZ, ID, UID) == (None, None)  # Redis restarted empty


def _waited(client: str) -> float:
    return _count("webook_redis_read_fallbacks_total", client=client, reason="waited")


async def test_a_lookup_in_flight_when_redis_freezes_and_its_fill_take_no_timeout(
    server: ManagedProcess,
) -> None:
    # A read bound far below the socket timeout: the lookup must end through the bound.
    client = create_redis(
        url_of(server), timeout=SOCKET_TIMEOUT_S, fallback_wait=0.3, name="counts_in_flight"
    )
    local = LocalCounts(client, stale_for=300.0)
    local.start()
    cache = CountsCache(client, local=local)
    try:
        await eventually(lambda: local.feed.fresh, "the feed subscribes")
        await cache.set_many(BIZ, {ID: Counts(4, 1, 0)})  # in Redis, not in memory
        waited = _waited("counts_in_flight")
        with frozen(server):
            started = time.monotonic()
            assert await cache.lookup(BIZ, ID, UID) == (None, None)  # then SQL, and fills:
            await cache.set_many(BIZ, {ID: Counts(4, 1, 0)})
            await cache.fill_flags(BIZ, ID, UID, Flags())
            assert time.monotonic() - started < 2.0
            assert _waited("counts_in_flight") - waited == 1
        health = redis_health(client)
        assert health is not None
        await eventually(lambda: health.available, "Redis answers again")
        assert (await cache.lookup(BIZ, ID, 0))[0] == Counts(4, 1, 0)
    finally:
        await local.aclose()
        await client.aclose(close_connection_pool=True)
