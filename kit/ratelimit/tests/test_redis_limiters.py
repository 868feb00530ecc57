"""Redis limiters on a real Redis: exactness under concurrency, server time, key expiry,
batching, failures, and agreement with the in-process limiters."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio as aioredis

from devstack.infra import free_port
from kit.ratelimit import (
    LOCAL_LIMITERS,
    REDIS_LIMITERS,
    Algorithm,
    Quota,
    RateLimitBackendError,
    RedisLimiter,
)
from kit.ratelimit.tests.conftest import ManualClock
from kit.redisx import create_redis

pytestmark = pytest.mark.integration

ALL = list(Algorithm)
BATCHING = [pytest.param(False, id="direct"), pytest.param(True, id="batched")]


@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("algorithm", ALL)
async def test_exact_under_200_concurrent_acquires_from_two_replicas(
    redis: aioredis.Redis, algorithm: Algorithm, batching: bool
) -> None:
    # An hour-long period: refill during the test is far below one unit.
    quota = Quota(limit=50, period=3600)
    replicas = [
        REDIS_LIMITERS[algorithm](redis, quota, prefix="exact", batching=batching) for _ in range(2)
    ]

    decisions = await asyncio.gather(
        *(replicas[n % 2].acquire("hot") for n in range(200)),
        *(replicas[n % 2].acquire("other", cost=2) for n in range(60)),
    )

    hot, other = decisions[:200], decisions[200:]
    assert sum(d.allowed for d in hot) == 50
    assert sum(d.allowed for d in other) == 25
    assert sorted(d.remaining for d in hot if d.allowed) == list(range(50))
    for limiter in replicas:
        await limiter.aclose()


async def test_batching_coalesces_concurrent_checks_into_few_round_trips(
    redis: aioredis.Redis,
) -> None:
    limiter = REDIS_LIMITERS[Algorithm.SLIDING_WINDOW](
        redis, Quota(limit=1000, period=60), prefix="batch", batching=True, max_in_flight=2
    )
    await limiter.acquire("warm-up")  # loads the script
    await redis.config_resetstat()

    decisions = await asyncio.gather(*(limiter.acquire(f"ip-{n % 20}") for n in range(400)))

    assert all(d.allowed for d in decisions)
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] <= 10
    await limiter.aclose()


@pytest.mark.parametrize("algorithm", ALL)
async def test_server_time_drives_refill_and_windows(
    redis: aioredis.Redis, algorithm: Algorithm
) -> None:
    # Long enough that no unit refills between the three calls even on a loaded machine.
    quota = Quota(limit=2, period=2.0)
    limiter = REDIS_LIMITERS[algorithm](redis, quota, prefix="time")
    assert [(await limiter.acquire("k")).allowed for _ in range(2)] == [True, True]
    refused = await limiter.acquire("k")
    assert not refused.allowed
    assert 0 < refused.retry_after <= 2 * quota.period

    await asyncio.sleep(refused.retry_after + 0.01)

    assert (await limiter.acquire("k")).allowed


@pytest.mark.parametrize("algorithm", ALL)
async def test_every_key_has_a_ttl_and_idle_keys_disappear(
    redis: aioredis.Redis, algorithm: Algorithm
) -> None:
    # Long enough that no key expires before the scan even on a loaded machine (a leaky
    # bucket's key lives only until the bucket has drained: about one period here).
    quota = Quota(limit=3, period=1.0)
    limiter = REDIS_LIMITERS[algorithm](redis, quota, prefix="ttl", batching=True)
    await asyncio.gather(*(limiter.acquire(f"client-{n % 300}") for n in range(900)))

    keys = [key async for key in redis.scan_iter(match="ttl:*", count=1000)]
    assert len(keys) == 300
    ttls = await asyncio.gather(*(redis.pttl(key) for key in keys))
    # -1 would be a key without TTL; -2 one that expired since the scan (windows are short).
    # At most two periods (the approximate window keeps the previous one), plus slack.
    assert all(ttl == -2 or 0 <= ttl <= 2 * quota.period * 1000 + 2 for ttl in ttls)

    deadline = time.monotonic() + 5
    for _ in range(100):
        if not await redis.dbsize() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert await redis.dbsize() == 0
    await limiter.aclose()


@pytest.mark.parametrize("algorithm", ALL)
async def test_agrees_with_the_in_process_limiter(
    redis: aioredis.Redis, algorithm: Algorithm, clock: ManualClock
) -> None:
    quota = Quota(limit=4, period=1.5, burst=3)
    remote = REDIS_LIMITERS[algorithm](redis, quota, prefix="agree", clock=clock)
    local = LOCAL_LIMITERS[algorithm](quota, clock=clock)
    rng = random.Random(f"agree-{algorithm}")

    for step in range(150):
        clock.advance(rng.randrange(0, 300) / 1000)
        key, cost = rng.choice(["a", "b"]), rng.choice([0, 1, 1, 1, 2, 5])
        ours, theirs = await remote.acquire(key, cost), await local.acquire(key, cost)
        assert (ours.allowed, ours.remaining) == (theirs.allowed, theirs.remaining), step
        assert ours.retry_after == pytest.approx(theirs.retry_after, abs=2e-6), step


async def test_scripts_are_reloaded_after_redis_forgets_them(redis: aioredis.Redis) -> None:
    limiter = REDIS_LIMITERS[Algorithm.TOKEN_BUCKET](redis, Quota(5, 60), prefix="reload")
    assert (await limiter.acquire("k")).allowed

    await redis.script_flush()  # what a Redis restart does

    assert (await limiter.acquire("k")).remaining == 3


@pytest.mark.parametrize("batching", BATCHING)
async def test_unreachable_redis_raises_the_backend_error(batching: bool) -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    limiter: RedisLimiter = REDIS_LIMITERS[Algorithm.FIXED_WINDOW](
        client, Quota(5, 60), prefix="down", batching=batching
    )
    started = time.monotonic()

    results = await asyncio.gather(
        *(limiter.acquire(f"k{n}") for n in range(20)), return_exceptions=True
    )

    assert all(isinstance(r, RateLimitBackendError) for r in results)
    assert time.monotonic() - started < 2
    await limiter.aclose()
    await client.aclose(close_connection_pool=True)


async def test_keys_are_namespaced_by_prefix_and_algorithm(redis: aioredis.Redis) -> None:
    limiters = [cls(redis, Quota(5, 60), prefix="ns:rule") for cls in REDIS_LIMITERS.values()]
    for limiter in limiters:
        await limiter.acquire("1.2.3.4")

    keys = sorted([k.decode() async for k in redis.scan_iter(match="*")])

    assert keys == sorted(f"ns:rule:{a.value}:1.2.3.4" for a in ALL)
    assert limiters[0].key("x") == "ns:rule:token_bucket:x"
