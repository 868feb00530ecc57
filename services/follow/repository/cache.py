"""Redis cache of follower/followee counts.

One hash per user, ``webook:follow:stats:<uid>`` = ``{followers, followees}``, with a TTL
(10 minutes by default); a follow or cancel that changed a relation deletes both users'
hashes after its commit. The cache never fails a request (:class:`kit.cache.store.CacheGuard`):
read errors and malformed hashes are misses (the caller reads SQL); failed writes and
deletes are logged and counted, never raised.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from kit.cache.store import FAILED, CacheGuard
from services.follow.domain import FollowStats

CACHE_NAME = "follow_stats"
KEY_PREFIX = "webook:follow:stats:"
DEFAULT_TTL_SECONDS = 600


TtlSeconds = int | Callable[[], int]
"""A TTL in seconds, or what to call at each write for it (a live setting)."""


def ttl_reader(ttl_seconds: TtlSeconds) -> Callable[[], int]:
    """What gives the TTL of each write: ``ttl_seconds`` itself if callable, else a constant."""
    if callable(ttl_seconds):
        return ttl_seconds
    constant = ttl_seconds
    return lambda: constant


def stats_key(uid: int) -> str:
    """The Redis key of ``uid``'s cached counts."""
    return f"{KEY_PREFIX}{uid}"


class FollowStatsCache:
    """Cache-aside store of :class:`FollowStats`; every method swallows Redis failures."""

    def __init__(
        self, redis: aioredis.Redis, *, ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    ) -> None:
        self._redis = redis
        self._ttl = ttl_reader(ttl_seconds)
        self._guard = CacheGuard(CACHE_NAME, redis=redis)

    async def get(self, uid: int) -> FollowStats | None:
        """The cached counts, or ``None`` on a miss or any failure."""
        key = stats_key(uid)
        raw = await self._guard.read(self._redis.hgetall(key))
        if raw is FAILED:
            return None
        if not raw:
            self._guard.miss()
            return None
        try:
            stats = FollowStats(
                uid=uid, followers=int(raw[b"followers"]), followees=int(raw[b"followees"])
            )
        except (KeyError, ValueError):
            self._guard.undecodable(key)
            return None
        self._guard.hit()
        return stats

    async def set(self, stats: FollowStats) -> None:
        """Store ``stats`` with the TTL."""
        await self._guard.write("set", self._set(stats), uid=stats.uid)

    async def _set(self, stats: FollowStats) -> None:
        key = stats_key(stats.uid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"followers": stats.followers, "followees": stats.followees})
            pipe.expire(key, self._ttl())
            await pipe.execute()

    async def invalidate(self, uids: list[int]) -> None:
        """Drop the cached counts of ``uids``."""
        if uids:
            await self._guard.write(
                "delete", self._redis.delete(*(stats_key(uid) for uid in uids)), uids=uids
            )
