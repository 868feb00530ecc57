"""The in-process reader views while Redis is frozen (SIGSTOP) or stopped: the last copies
answered (stale, counted) without waiting on Redis, dropped once the feed is back.

Each test runs a Redis of its own (:mod:`kit.cache.tests.outage`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
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
from services.article.domain import PublishedArticle
from services.article.repository.cache import (
    LOCAL_PUBLISHED_CACHE,
    InProcessPublishedArticleCache,
    RedisPublishedArticleCache,
)

pytestmark = pytest.mark.integration

ARTICLE = PublishedArticle(
    id=7,
    author_id=1,
    title="first",
    content="<p>text</p>",
    abstract="text",
    ctime_ms=1,
    utime_ms=2,
    author_name="Alice",
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagedProcess]:
    with own_redis(tmp_path) as proc:
        yield proc


@pytest.fixture
async def redis(server: ManagedProcess) -> AsyncIterator[aioredis.Redis]:
    async with client_of(server, "article_stale") as client:
        yield client


@pytest.fixture
async def cache(redis: aioredis.Redis) -> AsyncIterator[InProcessPublishedArticleCache]:
    async with fed(InProcessPublishedArticleCache(redis, stale_for=300.0)) as local:
        yield local


def _count(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def _local(result: str) -> float:
    return _count("webook_cache_requests_total", cache=LOCAL_PUBLISHED_CACHE, result=result)


def _stale_serves() -> float:
    return _count("webook_cache_stale_serves_total", cache=LOCAL_PUBLISHED_CACHE)


def _feed_up() -> float:
    return _count("webook_cache_invalidation_feed_up", feed=LOCAL_PUBLISHED_CACHE)


async def _kept_in_memory(cache: InProcessPublishedArticleCache) -> None:
    """Read until a read is answered from memory."""

    async def hit() -> bool:
        hits = _local("hit")
        assert await cache.get(ARTICLE.id) == ARTICLE
        return _local("hit") > hits

    await eventually(hit, "the view is kept in memory")


async def test_frozen_redis_answers_the_last_copy_then_refreshes(
    server: ManagedProcess, cache: InProcessPublishedArticleCache, redis: aioredis.Redis
) -> None:
    await cache.set(ARTICLE, ttl_s=600)
    await _kept_in_memory(cache)

    with frozen(server):
        await eventually(lambda: cache.serving_stale, "reads turn stale")
        served = _stale_serves()
        started = time.monotonic()
        assert await cache.get(ARTICLE.id) == ARTICLE
        assert await cache.get(ARTICLE.id + 1) is None  # not kept: Redis refused at once
        assert time.monotonic() - started < SOCKET_TIMEOUT_S
        assert _stale_serves() - served == 1
        await eventually(lambda: _feed_up() == 0, "the feed gives up its connection")

    await eventually(lambda: cache.feed.fresh, "the feed subscribes again")
    assert not cache.serving_stale
    misses = _local("miss")
    assert await cache.get(ARTICLE.id) == ARTICLE  # from Redis: the stale copy was dropped
    assert _local("miss") - misses == 1
    # Another replica's change shows here again.
    other = RedisPublishedArticleCache(redis, announce=True)
    changed = replace(ARTICLE, title="second")
    await other.set(changed, ttl_s=600)

    async def changed_here() -> bool:
        return await cache.get(ARTICLE.id) == changed

    await eventually(changed_here, "the change reaches this replica")


async def test_stopped_redis_answers_the_last_copy(
    server: ManagedProcess, cache: InProcessPublishedArticleCache
) -> None:
    await cache.set(ARTICLE, ttl_s=600)
    await _kept_in_memory(cache)
    served = _stale_serves()
    server.stop()
    try:
        # Fresh still, or refused by Redis and then stale: the copy either way.
        assert await cache.get(ARTICLE.id) == ARTICLE
        await eventually(lambda: cache.serving_stale, "reads turn stale")
        assert await cache.get(ARTICLE.id) == ARTICLE
        assert _stale_serves() > served
    finally:
        server.start()
    await eventually(lambda: cache.feed.fresh, "the feed subscribes again")
    assert not cache.serving_stale
    assert await cache.get(ARTICLE.id) is None  # Redis restarted empty: the copy is gone


async def test_without_stale_for_a_frozen_redis_empties_memory(
    server: ManagedProcess, redis: aioredis.Redis
) -> None:
    cache = InProcessPublishedArticleCache(redis)
    cache.start()
    try:
        await eventually(lambda: cache.feed.fresh, "the feed subscribes")
        await cache.set(ARTICLE, ttl_s=600)
        await _kept_in_memory(cache)
        with frozen(server):
            await eventually(lambda: not cache.feed.fresh, "the feed goes quiet")
            assert not cache.serving_stale
            assert await cache.get(ARTICLE.id) is None  # Redis refused at once: a miss
    finally:
        await cache.aclose()


def _waited(client: str) -> float:
    return _count("webook_redis_read_fallbacks_total", client=client, reason="waited")


async def test_a_read_in_flight_when_redis_freezes_goes_to_the_database_at_once(
    server: ManagedProcess,
) -> None:
    # A read bound far below the socket timeout: the read must end through the bound.
    client = create_redis(
        url_of(server), timeout=SOCKET_TIMEOUT_S, fallback_wait=0.3, name="article_in_flight"
    )
    cache = InProcessPublishedArticleCache(client, stale_for=300.0)
    cache.start()
    try:
        await eventually(lambda: cache.feed.fresh, "the feed subscribes")
        await cache.set(ARTICLE, ttl_s=600)  # in Redis; not yet read, so not in memory
        waited = _waited("article_in_flight")
        with frozen(server):
            started = time.monotonic()
            assert await cache.get(ARTICLE.id) is None  # the caller reads the database
            assert time.monotonic() - started < 2.0
            assert _waited("article_in_flight") - waited == 1
        health = redis_health(client)
        assert health is not None
        await eventually(lambda: health.available, "Redis answers again")
        assert await cache.get(ARTICLE.id) == ARTICLE
    finally:
        await cache.aclose()
        await client.aclose(close_connection_pool=True)
