"""Redis cache of follower/followee counts.

One hash per user, ``webook:follow:stats:<uid>`` = ``{followers, followees}``, with a TTL
(10 minutes by default); a follow or cancel that changed a relation deletes both users'
hashes after its commit. The cache never fails a request: read errors count as
``result="error"`` and are answered as misses (the caller reads SQL); failed writes and
deletes are logged and counted, never raised.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from services.follow.domain import FollowStats

logger = logging.getLogger(__name__)

CACHE_NAME = "follow_stats"
KEY_PREFIX = "webook:follow:stats:"
DEFAULT_TTL_SECONDS = 600
_REDIS_FAILURES = (RedisError, OSError)


def stats_key(uid: int) -> str:
    """The Redis key of ``uid``'s cached counts."""
    return f"{KEY_PREFIX}{uid}"


class FollowStatsCache:
    """Cache-aside store of :class:`FollowStats`; every method swallows Redis failures."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def get(self, uid: int) -> FollowStats | None:
        """The cached counts, or ``None`` on a miss or any failure."""
        try:
            raw = await self._redis.hgetall(stats_key(uid))
        except _REDIS_FAILURES:
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            logger.warning("follow stats cache read failed", exc_info=True)
            return None
        if not raw:
            CACHE_REQUESTS.labels(CACHE_NAME, "miss").inc()
            return None
        try:
            stats = FollowStats(
                uid=uid, followers=int(raw[b"followers"]), followees=int(raw[b"followees"])
            )
        except (KeyError, ValueError):
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            return None
        CACHE_REQUESTS.labels(CACHE_NAME, "hit").inc()
        return stats

    async def set(self, stats: FollowStats) -> None:
        """Store ``stats`` with the TTL."""
        key = stats_key(stats.uid)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"followers": stats.followers, "followees": stats.followees})
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except _REDIS_FAILURES:
            CACHE_WRITE_ERRORS.labels(CACHE_NAME, "set").inc()
            logger.warning("follow stats cache write failed", exc_info=True)

    async def invalidate(self, uids: list[int]) -> None:
        """Drop the cached counts of ``uids``."""
        if not uids:
            return
        try:
            await self._redis.delete(*(stats_key(uid) for uid in uids))
        except _REDIS_FAILURES:
            CACHE_WRITE_ERRORS.labels(CACHE_NAME, "delete").inc()
            logger.warning("follow stats cache invalidation failed", exc_info=True)
