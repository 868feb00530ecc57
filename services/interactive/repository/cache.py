"""Redis cache of interactive counts: one hash per object.

``webook:interactive:<biz>:<biz_id>`` holds ``read_cnt``, ``like_cnt`` and ``collect_cnt``
with a TTL (15 minutes by default). A miss reads SQL and fills the hash (all three fields and
the TTL in one MULTI/EXEC). After a counter changes in SQL, the cached hash is adjusted with
a Lua script that increments **only if the hash exists**: a missing hash stays missing (the
next read loads the truth from SQL), so an increment can never create a partial or
TTL-less entry.

The cache never fails a request: a Redis error on read is counted as ``result="error"`` and
answered as a miss; a failed fill or increment is logged and counted in
``webook_cache_write_errors_total``, and a failed increment is followed by a best-effort
delete so that the stale hash does not outlive the outage by its whole TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from services.interactive.domain import Counts

logger = logging.getLogger(__name__)

CACHE_NAME = "interactive_counts"
KEY_PREFIX = "webook:interactive:"
DEFAULT_TTL_SECONDS = 900
FIELDS = ("read_cnt", "like_cnt", "collect_cnt")
_REDIS_FAILURES = (RedisError, OSError)

# KEYS[1]: the hash; ARGV[1]: the field; ARGV[2]: the delta. Returns the new value, or
# nil when the hash is not cached.
INCR_IF_CACHED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return nil
"""


def counts_key(biz: str, biz_id: int) -> str:
    """The Redis key of an object's cached counts."""
    return f"{KEY_PREFIX}{biz}:{biz_id}"


def _decode(raw: Mapping[Any, Any]) -> Counts | None:
    values = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    if not all(field in values for field in FIELDS):
        return None
    return Counts(
        read_cnt=values["read_cnt"], like_cnt=values["like_cnt"], collect_cnt=values["collect_cnt"]
    )


class CountsCache:
    """Cached counts by object; every method tolerates Redis being down."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._incr: AsyncScript = redis.register_script(INCR_IF_CACHED)

    async def get_many(self, biz: str, biz_ids: Sequence[int]) -> dict[int, Counts]:
        """The cached counts among ``biz_ids`` (one round trip); misses are absent."""
        if not biz_ids:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for biz_id in biz_ids:
                    pipe.hgetall(counts_key(biz, biz_id))
                answers = await pipe.execute()
        except _REDIS_FAILURES as exc:
            logger.warning(
                "counts cache read failed; reading the database",
                extra={"cache": CACHE_NAME, "error": repr(exc)},
            )
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc(len(biz_ids))
            return {}
        found: dict[int, Counts] = {}
        for biz_id, raw in zip(biz_ids, answers, strict=True):
            try:
                counts = _decode(raw) if raw else None
            except (ValueError, TypeError):
                CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
                continue
            CACHE_REQUESTS.labels(CACHE_NAME, "hit" if counts else "miss").inc()
            if counts is not None:
                found[biz_id] = counts
        return found

    async def set_many(self, biz: str, counts: Mapping[int, Counts]) -> None:
        """Cache ``counts`` with the TTL; failures are logged and counted."""
        if not counts:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for biz_id, value in counts.items():
                    key = counts_key(biz, biz_id)
                    pipe.hset(
                        key,
                        mapping={
                            "read_cnt": value.read_cnt,
                            "like_cnt": value.like_cnt,
                            "collect_cnt": value.collect_cnt,
                        },
                    )
                    pipe.expire(key, self._ttl)
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._write_failed("set", exc, biz, counts)

    async def incr_if_cached(self, biz: str, field: str, deltas: Mapping[int, int]) -> None:
        """Add ``deltas[biz_id]`` to ``field`` of each cached hash (one round trip)."""
        if not deltas:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for biz_id, delta in deltas.items():
                    await self._incr(
                        keys=[counts_key(biz, biz_id)], args=[field, delta], client=pipe
                    )
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._write_failed("incr", exc, biz, deltas)
            await self.delete(biz, deltas)

    async def delete(self, biz: str, biz_ids: Iterable[int]) -> None:
        """Drop cached hashes; failures are logged and counted."""
        keys = [counts_key(biz, biz_id) for biz_id in biz_ids]
        if not keys:
            return
        try:
            await self._redis.delete(*keys)
        except _REDIS_FAILURES as exc:
            self._write_failed("delete", exc, biz, keys)

    @staticmethod
    def _write_failed(op: str, exc: BaseException, biz: str, ids: Iterable[Any]) -> None:
        logger.warning(
            "counts cache write failed",
            extra={
                "cache": CACHE_NAME,
                "op": op,
                "biz": biz,
                "ids": list(ids)[:20],
                "error": repr(exc),
            },
        )
        CACHE_WRITE_ERRORS.labels(CACHE_NAME, op).inc()
