"""Fixtures: a hand-moved clock, and every limiter implementation behind one factory.

``limiter_factory`` is parametrized over the in-process limiters and the Redis limiters
(one round trip per check, and batched); the Redis ones get the same hand-moved clock
(sent to the scripts instead of Redis's ``TIME``), so one behavioural spec checks all three.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest
import redis.asyncio as aioredis

from kit.ratelimit import (
    LOCAL_LIMITERS,
    REDIS_LIMITERS,
    Algorithm,
    Limiter,
    Quota,
    RedisLimiter,
)
from kit.redisx import create_redis

# Redis command timeout of the test clients. Production's 0.5 s turns an outage into fast
# errors; here a command that waits behind other test processes on a loaded 2-core machine
# must not fail a test about counting (the outage tests build their own clients).
REDIS_TIMEOUT_S = 10.0

# An epoch instant on a whole hour, so that windows of whole seconds start at round numbers.
EPOCH_START_US = 1_700_002_800 * 1_000_000


class ManualClock:
    """Epoch seconds that only move when told to; kept in whole microseconds."""

    def __init__(self) -> None:
        self.now_us = EPOCH_START_US

    def __call__(self) -> float:
        return self.now_us / 1e6

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1e6)

    def set_offset(self, seconds: float) -> None:
        """Place the clock ``seconds`` after the start instant."""
        self.now_us = EPOCH_START_US + round(seconds * 1e6)


class LimiterFactory(Protocol):
    """Builds a limiter of one implementation, driven by ``clock``."""

    kind: str

    def __call__(self, algorithm: Algorithm, quota: Quota) -> Limiter: ...


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client with the production pool settings but a patient timeout, on a flushed database."""
    client = create_redis(redis_url, timeout=REDIS_TIMEOUT_S)
    await client.flushdb()
    yield client
    await client.aclose(close_connection_pool=True)


class _Factory:
    def __init__(self, kind: str, build: Callable[[Algorithm, Quota], Limiter]) -> None:
        self.kind = kind
        self._build = build

    def __call__(self, algorithm: Algorithm, quota: Quota) -> Limiter:
        return self._build(algorithm, quota)


@pytest.fixture(
    params=[
        "local",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-batched", marks=pytest.mark.integration),
    ]
)
async def limiter_factory(
    request: pytest.FixtureRequest, clock: ManualClock
) -> AsyncIterator[LimiterFactory]:
    """Every implementation in turn: in-process, Redis, Redis batched."""
    kind: str = request.param
    if kind == "local":
        yield _Factory(kind, lambda a, q: LOCAL_LIMITERS[a](q, clock=clock))
        return
    # Only the Redis variants start the session's Redis.
    client = create_redis(request.getfixturevalue("redis_url"), timeout=REDIS_TIMEOUT_S)
    await client.flushdb()
    built: list[RedisLimiter] = []

    def build(algorithm: Algorithm, quota: Quota) -> Limiter:
        limiter = REDIS_LIMITERS[algorithm](
            client, quota, prefix="test", batching=kind == "redis-batched", clock=clock
        )
        built.append(limiter)
        return limiter

    yield _Factory(kind, build)
    for limiter in built:
        await limiter.aclose()
    await client.aclose(close_connection_pool=True)
