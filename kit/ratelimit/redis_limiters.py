"""Redis rate limiters: one atomic Lua script (:mod:`kit.ratelimit.lua`) per check.

Each limiter is exact across every process sharing the Redis: a check reads and writes its
key inside one script, so concurrent checks from any number of replicas serialise in Redis.
Time is the Redis server's clock (``TIME``), so replicas with drifting clocks agree; pass
``clock`` (epoch seconds) only in tests that need to place checks on window edges.

Two ways to reach Redis, same scripts, same answers:

- ``batching=False``: one ``EVALSHA`` round trip per check.
- ``batching=True``: checks made concurrently by many tasks are coalesced
  (:class:`~kit.ratelimit.coalesce.Coalescer`) into one ``EVALSHA`` over several keys, at
  most ``max_in_flight`` at a time. Each check stays exact and atomic (the script runs the
  batch's checks one after another); what changes is that a round trip carries many
  checks, so throughput is no longer capped by round trips. An idle limiter sends a lone
  check at once; a check may wait for one batch ahead of it under load. In Redis Cluster
  all keys of one ``EVALSHA`` must share a hash slot, so batching needs a single Redis
  (or a key prefix with a hash tag).

Keys are ``<prefix>:<algorithm>:<key>``; every key gets a TTL (see :mod:`kit.ratelimit.lua`).
Redis failures raise :class:`~kit.ratelimit.base.RateLimitBackendError`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from kit.ratelimit import lua
from kit.ratelimit.base import Algorithm, Decision, Quota, RateLimitBackendError, check_cost
from kit.ratelimit.coalesce import Coalescer

EpochClock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``."""


class RedisLimiter(ABC):
    """A :class:`~kit.ratelimit.base.Limiter` whose state lives in Redis.

    Args:
        redis: the client (e.g. :func:`kit.redisx.create_redis`).
        quota: what each key may use.
        prefix: namespace of this limiter's keys, e.g. ``webook:rl:login``.
        batching: coalesce concurrent checks into shared round trips (see the module).
        max_batch: the most checks per round trip when batching.
        max_in_flight: the most concurrent round trips when batching.
        clock: send this clock's time instead of using Redis's (tests).
    """

    algorithm: ClassVar[Algorithm]
    script_source: ClassVar[str]

    def __init__(
        self,
        redis: aioredis.Redis,
        quota: Quota,
        *,
        prefix: str,
        batching: bool = False,
        max_batch: int = 256,
        max_in_flight: int = 4,
        clock: EpochClock | None = None,
    ) -> None:
        """Build the limiter; nothing is sent to Redis until the first check."""
        self.quota = quota
        self._prefix = f"{prefix}:{self.algorithm.value}:"
        self._redis = redis
        self._sha = hashlib.sha1(self.script_source.encode(), usedforsecurity=False).hexdigest()
        self._clock = clock
        self._params = self._script_params()
        self._coalescer: Coalescer[tuple[str, int], Decision] | None = (
            Coalescer(self._run, max_batch=max_batch, max_in_flight=max_in_flight)
            if batching
            else None
        )

    @property
    def redis(self) -> aioredis.Redis:
        """The client the checks go to."""
        return self._redis

    def key(self, key: str) -> str:
        """The Redis key holding ``key``'s state."""
        return self._prefix + key

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` units for ``key`` if the quota allows (one atomic script)."""
        check_cost(cost)
        if self._coalescer is not None:
            return await self._coalescer.submit((key, cost))
        return (await self._run(((key, cost),)))[0]

    async def aclose(self) -> None:
        """Stop the batch flushers (the Redis client belongs to the caller)."""
        if self._coalescer is not None:
            await self._coalescer.aclose()

    async def _run(self, checks: Sequence[tuple[str, int]]) -> list[Decision]:
        now = "" if self._clock is None else str(round(self._clock() * 1e6))
        keys = [self._prefix + key for key, _ in checks]
        args: list[Any] = [now, *self._params, *self._extra_args(), *(c for _, c in checks)]
        try:
            try:
                reply = await self._redis.evalsha(self._sha, len(keys), *keys, *args)
            except NoScriptError:
                # First use on this server, or Redis restarted and forgot its scripts.
                await self._redis.script_load(self.script_source)
                reply = await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise RateLimitBackendError(f"rate limit check in Redis failed: {exc}") from exc
        fields = [int(field) for field in reply.split()]
        return [
            Decision(True, fields[i + 1], 0.0)
            if fields[i]
            else Decision(
                False,
                max(0, fields[i + 1]),
                math.inf if fields[i + 2] < 0 else fields[i + 2] / 1e6,
            )
            for i in range(0, len(fields), 3)
        ]

    @abstractmethod
    def _script_params(self) -> list[Any]:
        """The algorithm's ``ARGV`` after the time and before the costs."""

    def _extra_args(self) -> list[Any]:
        """Per-call ``ARGV`` after the parameters (none by default)."""
        return []


class RedisTokenBucket(RedisLimiter):
    """Token bucket in a Redis hash (``tokens``, ``ts``): rate ``limit / period``, ``burst``."""

    algorithm = Algorithm.TOKEN_BUCKET
    script_source = lua.TOKEN_BUCKET

    def _script_params(self) -> list[Any]:
        return [repr(self.quota.rate), self.quota.capacity]


class RedisLeakyBucket(RedisLimiter):
    """Leaky bucket as a meter (GCRA) in one Redis string: the drained-by instant."""

    algorithm = Algorithm.LEAKY_BUCKET
    script_source = lua.LEAKY_BUCKET

    def _script_params(self) -> list[Any]:
        return [repr(1e6 / self.quota.rate), self.quota.capacity]


class RedisFixedWindow(RedisLimiter):
    """Fixed window in a Redis hash (window index, count), aligned on the epoch."""

    algorithm = Algorithm.FIXED_WINDOW
    script_source = lua.FIXED_WINDOW

    def _script_params(self) -> list[Any]:
        return [self.quota.limit, round(self.quota.period * 1e6)]


class RedisSlidingWindowLog(RedisLimiter):
    """Sliding window log in a Redis sorted set, one member per admitted unit."""

    algorithm = Algorithm.SLIDING_WINDOW
    script_source = lua.SLIDING_WINDOW_LOG

    def __init__(self, redis: aioredis.Redis, quota: Quota, **options: Any) -> None:
        """See :class:`RedisLimiter`."""
        super().__init__(redis, quota, **options)
        # Members must be unique across every process and call: a random tag per limiter
        # and a counter make a nonce per script call (the script adds check and unit).
        self._tag = os.urandom(6).hex()
        self._calls = itertools.count()

    def _script_params(self) -> list[Any]:
        return [self.quota.limit, round(self.quota.period * 1e6)]

    def _extra_args(self) -> list[Any]:
        return [f"{self._tag}{next(self._calls):x}"]


class RedisSlidingWindowCounter(RedisLimiter):
    """Approximate sliding window in a Redis hash (window index, count, previous count)."""

    algorithm = Algorithm.SLIDING_WINDOW_APPROX
    script_source = lua.SLIDING_WINDOW_COUNTER

    def _script_params(self) -> list[Any]:
        return [self.quota.limit, round(self.quota.period * 1e6)]


REDIS_LIMITERS: dict[Algorithm, type[RedisLimiter]] = {
    cls.algorithm: cls
    for cls in (
        RedisTokenBucket,
        RedisLeakyBucket,
        RedisFixedWindow,
        RedisSlidingWindowLog,
        RedisSlidingWindowCounter,
    )
}
"""The Redis limiter class of each algorithm."""
