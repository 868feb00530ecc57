"""A real Redis frozen (SIGSTOP) and stopped under the client's short-circuit, an
invalidation feed with stale copies, and a resilient rate limiter.

Each test runs a Redis of its own (:mod:`kit.cache.tests.outage`): freezing the session's
would stall every other test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from devstack.infra import ManagedProcess
from kit.cache.invalidation import InvalidatedCache, InvalidationFeed, publish_invalidation
from kit.cache.tests.outage import (
    SOCKET_TIMEOUT_S,
    client_of,
    eventually,
    frozen,
    own_redis,
)
from kit.ratelimit import FailurePolicy, LocalTokenBucket, Quota, RedisTokenBucket, ResilientLimiter
from kit.redisx import RedisHealth, RedisState, RedisUnavailable, redis_health

pytestmark = pytest.mark.integration

CHANNEL = "webook:test:outage"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagedProcess]:
    with own_redis(tmp_path) as proc:
        yield proc


@pytest.fixture
async def client(server: ManagedProcess) -> AsyncIterator[aioredis.Redis]:
    async with client_of(server, "outage_test") as redis:
        yield redis


def _health(redis: aioredis.Redis) -> RedisHealth:
    health = redis_health(redis)
    assert health is not None
    return health


async def test_frozen_redis_costs_one_timeout_then_commands_fail_at_once(
    server: ManagedProcess, client: aioredis.Redis
) -> None:
    health = _health(client)
    assert await client.set("k", "1")
    with frozen(server):
        with pytest.raises(RedisConnectionError):  # the first one waits its timeout
            await client.get("k")
        assert health.state is RedisState.HUNG
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(RedisUnavailable):
                await client.get("k")
        # Twenty refusals together took less than one socket timeout: none waited.
        assert time.monotonic() - started < SOCKET_TIMEOUT_S
    await eventually(lambda: health.available, "the probe sees Redis answer again")
    assert await client.get("k") == b"1"


async def test_stopped_redis_fails_fast_and_the_first_connection_after_restart_works(
    server: ManagedProcess, client: aioredis.Redis
) -> None:
    health = _health(client)
    assert await client.set("k", "1")
    server.stop()
    try:
        with pytest.raises(RedisConnectionError) as refused:
            await client.get("k")
        assert not isinstance(refused.value, RedisUnavailable)  # refused, not short-circuited
        assert health.state is RedisState.DOWN
    finally:
        server.start()
    # No waiting for the probe: commands kept trying, the first that connects works.
    assert await client.set("k", "2")
    assert health.available


def _stale_serves(name: str) -> float:
    value = REGISTRY.get_sample_value("webook_cache_stale_serves_total", {"cache": name})
    return value or 0.0


def _feed_up(name: str) -> float | None:
    return REGISTRY.get_sample_value("webook_cache_invalidation_feed_up", {"feed": name})


async def test_a_feed_knows_a_frozen_redis_before_its_cache_goes_stale_then_refreshes(
    server: ManagedProcess, client: aioredis.Redis
) -> None:
    health = _health(client)
    cache: InvalidatedCache[str, int] = InvalidatedCache(stale_for=300.0, name="outage_feed")
    feed = InvalidationFeed(
        client,
        CHANNEL,
        name="outage_feed",
        on_message=lambda member: cache.invalidate(member.decode()),
        on_reset=cache.clear,
        on_lost=cache.lost,
    )
    cache.attach(feed)
    feed.start()
    try:
        await eventually(lambda: feed.fresh, "the feed subscribes")
        assert cache.put("a", 1, cache.ticket())
        served_before = _stale_serves("outage_feed")
        with frozen(server):
            # No command is sent: the feed's unanswered pings alone reveal the hang.
            await eventually(lambda: not health.available, "the feed reports the hang")
            await eventually(lambda: not feed.fresh, "the feed stops vouching")
            assert cache.serving_stale
            assert cache.get("a") == 1
            assert _stale_serves("outage_feed") - served_before == 1
            await eventually(
                lambda: _feed_up("outage_feed") == 0, "the feed gives up its connection"
            )
            assert cache.get("a") == 1
        await eventually(lambda: feed.fresh, "the feed subscribes again")
        # The stale copy went with the new subscription: the next reader asks Redis.
        assert cache.get("a") is None
        assert not cache.serving_stale
        assert cache.put("a", 2, cache.ticket())
        await publish_invalidation(client, CHANNEL, "a", ("SET", "a", "3"))
        await eventually(lambda: cache.get("a") is None, "announcements apply again")
    finally:
        await feed.aclose()


async def test_a_resilient_limiter_decides_locally_without_waiting_on_a_frozen_redis(
    server: ManagedProcess, client: aioredis.Redis
) -> None:
    quota = Quota(100, 60.0)
    limiter = ResilientLimiter(
        RedisTokenBucket(client, quota, prefix="webook:test:rl"),
        policy=FailurePolicy.LOCAL,
        fallback=LocalTokenBucket(quota),
        name="outage",
        retry_interval=0.05,
    )
    health = _health(client)
    assert not (await limiter.acquire("u")).degraded
    with frozen(server):
        assert (await limiter.acquire("u")).degraded  # waited one timeout
        assert health.state is RedisState.HUNG
        started = time.monotonic()
        for _ in range(20):
            decision = await limiter.acquire("u")
            assert decision.allowed
            assert decision.degraded
            await asyncio.sleep(0.01)  # retry intervals pass: its probes are refused at once
        assert time.monotonic() - started < SOCKET_TIMEOUT_S

    async def answered_by_redis() -> bool:
        return not (await limiter.acquire("u")).degraded

    await eventually(answered_by_redis, "the limiter uses Redis again")
