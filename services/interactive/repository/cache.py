"""Redis cache of interactive counts (one hash per object) and per-user flags.

**Counts.** ``webook:interactive:<biz>:<biz_id>`` holds ``read_cnt``, ``like_cnt`` and
``collect_cnt`` with a TTL (15 minutes by default). A miss reads SQL and fills the hash (all
three fields and the TTL in one MULTI/EXEC). After a counter changes in SQL, the cached hash
is adjusted with a Lua script that increments **only if the hash exists**: a missing hash
stays missing (the next read loads the truth from SQL), so an increment can never create a
partial or TTL-less entry.

**Flags.** ``webook:interactive-flags:<biz>:<biz_id>:<uid>`` holds ``liked`` and
``collected`` (``0``/``1``) of one user, same TTL. Writes go **through** after the SQL
commit: a like, cancel, collect or uncollect sets its field (``HSET`` + ``EXPIRE`` in one
MULTI), which may leave a hash with one field only; a read needs both fields, so such a hash
is a miss. A miss reads both flags from SQL (one query) and fills the hash with a Lua script
that sets **only absent fields**: a value written through by a write that committed while the
read was loading cannot be overwritten by the older value the read saw.

**Fast read.** :meth:`CountsCache.lookup` answers an object's counts and a user's flags in one
round trip (one Lua call with both keys), so a cached ``Get`` opens no SQL session.

The cache never fails a request: a Redis error on read is counted as ``result="error"`` and
answered as a miss; a failed fill or write is logged and counted in
``webook_cache_write_errors_total``, and a failed increment or flag write is followed by a
best-effort delete so that the stale entry does not outlive the outage by its whole TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from services.interactive.domain import Counts, Flags

logger = logging.getLogger(__name__)

CACHE_NAME = "interactive_counts"
FLAGS_CACHE_NAME = "interactive_flags"
KEY_PREFIX = "webook:interactive:"
# "-" cannot occur in a biz, so no flags key can collide with a counts key.
FLAGS_KEY_PREFIX = "webook:interactive-flags:"
DEFAULT_TTL_SECONDS = 900
FIELDS = ("read_cnt", "like_cnt", "collect_cnt")
FLAG_FIELDS = ("liked", "collected")
FlagUpdate = tuple[str, int, int, str, bool]
"""A flag a committed write established: ``(biz, biz_id, uid, field, value)``."""
_REDIS_FAILURES = (RedisError, OSError)

# KEYS[1]: the hash; ARGV[1]: the field; ARGV[2]: the delta. Returns the new value, or
# nil when the hash is not cached.
INCR_IF_CACHED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return nil
"""

# KEYS[1]: the counts hash, KEYS[2] (optional): the flags hash. Returns the counts fields
# and, with two keys, the flags fields, in FIELDS / FLAG_FIELDS order (nil where absent).
LOOKUP = """
local counts = redis.call('HMGET', KEYS[1], 'read_cnt', 'like_cnt', 'collect_cnt')
if #KEYS == 1 then
  return {counts}
end
return {counts, redis.call('HMGET', KEYS[2], 'liked', 'collected')}
"""

# KEYS[1]: the flags hash; ARGV: liked, collected (0/1), TTL. Sets only absent fields, so a
# value written through by a concurrent write wins over the one this read loaded.
FILL_FLAGS = """
redis.call('HSETNX', KEYS[1], 'liked', ARGV[1])
redis.call('HSETNX', KEYS[1], 'collected', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_COUNTS_HIT = CACHE_REQUESTS.labels(CACHE_NAME, "hit")
_COUNTS_MISS = CACHE_REQUESTS.labels(CACHE_NAME, "miss")
_FLAGS_HIT = CACHE_REQUESTS.labels(FLAGS_CACHE_NAME, "hit")
_FLAGS_MISS = CACHE_REQUESTS.labels(FLAGS_CACHE_NAME, "miss")


def counts_key(biz: str, biz_id: int) -> str:
    """The Redis key of an object's cached counts."""
    return f"{KEY_PREFIX}{biz}:{biz_id}"


def flags_key(biz: str, biz_id: int, uid: int) -> str:
    """The Redis key of one user's cached flags on an object."""
    return f"{FLAGS_KEY_PREFIX}{biz}:{biz_id}:{uid}"


def _decode_fields(raw: Sequence[Any]) -> list[int] | None:
    """HMGET answers as ints, or ``None`` if a field is absent."""
    if any(v is None for v in raw):
        return None
    return [int(v) for v in raw]


def _decode(raw: Mapping[Any, Any]) -> Counts | None:
    values = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    if not all(field in values for field in FIELDS):
        return None
    return Counts(
        read_cnt=values["read_cnt"], like_cnt=values["like_cnt"], collect_cnt=values["collect_cnt"]
    )


class CountsCache:
    """Cached counts by object and flags by (object, user); every method tolerates Redis
    being down."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._incr: AsyncScript = redis.register_script(INCR_IF_CACHED)
        self._lookup: AsyncScript = redis.register_script(LOOKUP)
        self._fill_flags: AsyncScript = redis.register_script(FILL_FLAGS)

    async def lookup(self, biz: str, biz_id: int, uid: int) -> tuple[Counts | None, Flags | None]:
        """The object's cached counts and, for ``uid`` > 0, the user's cached flags, in one
        round trip; ``None`` for what is not (completely) cached or when Redis fails."""
        keys = [counts_key(biz, biz_id)]
        if uid > 0:
            keys.append(flags_key(biz, biz_id, uid))
        try:
            answer = await self._lookup(keys=keys)
        except _REDIS_FAILURES as exc:
            logger.warning(
                "counts cache read failed; reading the database",
                extra={"cache": CACHE_NAME, "error": repr(exc)},
            )
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            return None, None
        try:
            values = _decode_fields(answer[0])
            flag_values = _decode_fields(answer[1]) if uid > 0 else None
        except (ValueError, TypeError, IndexError):
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            return None, None
        counts = None if values is None else Counts(*values)
        (_COUNTS_MISS if counts is None else _COUNTS_HIT).inc()
        if uid <= 0:
            return counts, None
        flags = None if flag_values is None else Flags(*(v == 1 for v in flag_values))
        (_FLAGS_MISS if flags is None else _FLAGS_HIT).inc()
        return counts, flags

    async def fill_flags(self, biz: str, biz_id: int, uid: int, flags: Flags) -> None:
        """Cache flags loaded from SQL, keeping any field a write has set meanwhile."""
        try:
            await self._fill_flags(
                keys=[flags_key(biz, biz_id, uid)],
                args=[int(flags.liked), int(flags.collected), self._ttl],
            )
        except _REDIS_FAILURES as exc:
            self._write_failed("fill_flags", exc, biz, [biz_id], cache=FLAGS_CACHE_NAME)

    async def write_flags(self, updates: Sequence[FlagUpdate]) -> None:
        """Write committed flag values through (one MULTI); on failure, drop those hashes."""
        if not updates:
            return
        keys = [flags_key(biz, biz_id, uid) for biz, biz_id, uid, _, _ in updates]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, (_, _, _, field, value) in zip(keys, updates, strict=True):
                    pipe.hset(key, field, int(value))
                    pipe.expire(key, self._ttl)
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._write_failed("write_flags", exc, updates[0][0], keys, cache=FLAGS_CACHE_NAME)
            try:
                await self._redis.delete(*keys)
            except _REDIS_FAILURES as again:
                self._write_failed(
                    "delete_flags", again, updates[0][0], keys, cache=FLAGS_CACHE_NAME
                )

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
    def _write_failed(
        op: str, exc: BaseException, biz: str, ids: Iterable[Any], *, cache: str = CACHE_NAME
    ) -> None:
        logger.warning(
            "counts cache write failed",
            extra={
                "cache": cache,
                "op": op,
                "biz": biz,
                "ids": list(ids)[:20],
                "error": repr(exc),
            },
        )
        CACHE_WRITE_ERRORS.labels(cache, op).inc()
