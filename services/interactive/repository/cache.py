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

**In-process copies.** With a :class:`LocalCounts` (the default wiring), counts and complete
flags read from Redis are also kept in this process's memory, so that a hot object costs no
Redis round trip per ``Get``. They are kept exact across replicas the way the article
service keeps its reader views (:mod:`kit.cache.invalidation`): **every** write to the
hashes announces what it changed on :data:`CHANNEL` atomically with the change (``PUBLISH``
inside the increment's Lua script and the flags fill's Lua script, or in the same MULTI/EXEC
as the ``HSET``/``DEL``), the increment announcing even when the hash is not cached in Redis
(an in-process copy may outlive an expired hash); the writer also drops its own copies right
after its Redis write, succeeded or not. Every replica's :class:`LocalCounts` subscribes and
drops the announced entries; loads take a ticket first, so a value read just before a change
is never kept after its announcement. Without a fresh subscription (not yet confirmed, lost,
or silent for more than ``max_lag``) the copies are dropped and unused, and every lookup
goes to Redis as before, except while Redis itself is unreachable (refusing, or known hung
by :mod:`kit.redisx`): then the copies kept are answered as stale for up to ``stale_for``
seconds (counted in ``webook_cache_stale_serves_total``) and dropped when the subscription
is back. Copies are bounded in number and live at most ``max_age`` seconds,
which bounds what announcements cannot cover (a Redis flush, writes by a process without
this code, a write whose Redis part failed: the writer drops its own copies, the others keep
theirs at most ``max_age``, while their Redis copy may stay stale for its TTL as before).

The cache never fails a request: a Redis error on read is counted as ``result="error"`` and
answered as a miss; a failed fill or write is logged and counted in
``webook_cache_write_errors_total``, and a failed increment or flag write is followed by a
best-effort delete so that the stale entry does not outlive the outage by its whole TTL.
Lookups and the fills that follow a miss (:meth:`CountsCache.set_many`,
:meth:`CountsCache.fill_flags`) are reads with a fallback (:func:`kit.redisx.fallback_reads`):
a silent Redis costs them milliseconds, not a socket timeout; increments and write-through
flags keep the client's full timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from kit.cache.invalidation import (
    DEFAULT_MAX_LAG,
    DEFAULT_PING_INTERVAL,
    InvalidatedCache,
    InvalidationFeed,
    LocalTier,
)
from kit.cache.metrics import CACHE_REQUESTS
from kit.cache.store import DECODE_FAILURES, FAILED, CacheGuard
from services.interactive.domain import Counts, Flags

logger = logging.getLogger(__name__)

CACHE_NAME = "interactive_counts"
FLAGS_CACHE_NAME = "interactive_flags"
LOCAL_CACHE_NAME = "interactive_counts_local"
LOCAL_FLAGS_CACHE_NAME = "interactive_flags_local"
# The invalidation feed's metrics label.
LOCAL_FEED_NAME = "interactive_local"
# Where every change of a counts or flags hash is announced: ``c:<biz>:<biz_id>`` for
# counts, ``f:<biz>:<biz_id>:<uid>`` for flags (a biz never contains ":").
CHANNEL = "webook:interactive:changed"
DEFAULT_LOCAL_COUNTS_ENTRIES = 10_000
DEFAULT_LOCAL_FLAGS_ENTRIES = 50_000
DEFAULT_LOCAL_MAX_AGE_SECONDS = 60.0
KEY_PREFIX = "webook:interactive:"
# "-" cannot occur in a biz, so no flags key can collide with a counts key.
FLAGS_KEY_PREFIX = "webook:interactive-flags:"
DEFAULT_TTL_SECONDS = 900


TtlSeconds = int | Callable[[], int]
"""A TTL in seconds, or what to call at each write for it (a live setting)."""


def ttl_reader(ttl_seconds: TtlSeconds) -> Callable[[], int]:
    """What gives the TTL of each write: ``ttl_seconds`` itself if callable, else a constant."""
    if callable(ttl_seconds):
        return ttl_seconds
    constant = ttl_seconds
    return lambda: constant


FIELDS = ("read_cnt", "like_cnt", "collect_cnt")
FLAG_FIELDS = ("liked", "collected")
FlagUpdate = tuple[str, int, int, str, bool]
"""A flag a committed write established: ``(biz, biz_id, uid, field, value)``."""
_REDIS_FAILURES = (RedisError, OSError)

# KEYS[1]: the hash; ARGV[1]: the field; ARGV[2]: the delta; ARGV[3]: the channel;
# ARGV[4]: the member. Returns the new value, or nil when the hash is not cached. Announces
# the change either way: the counts changed in SQL, and an in-process copy may outlive the
# Redis hash (expired, evicted).
INCR_IF_CACHED = """
local value = nil
if redis.call('EXISTS', KEYS[1]) == 1 then
  value = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return value
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

# KEYS[1]: the flags hash; ARGV: liked, collected (0/1), TTL, channel, member. Sets only
# absent fields, so a value written through by a concurrent write wins over the one this
# read loaded; announces the hash if a field was set.
FILL_FLAGS = """
local set = redis.call('HSETNX', KEYS[1], 'liked', ARGV[1])
set = set + redis.call('HSETNX', KEYS[1], 'collected', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if set > 0 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"""


def counts_key(biz: str, biz_id: int) -> str:
    """The Redis key of an object's cached counts."""
    return f"{KEY_PREFIX}{biz}:{biz_id}"


def flags_key(biz: str, biz_id: int, uid: int) -> str:
    """The Redis key of one user's cached flags on an object."""
    return f"{FLAGS_KEY_PREFIX}{biz}:{biz_id}:{uid}"


def counts_member(biz: str, biz_id: int) -> str:
    """How a change of an object's counts is announced on :data:`CHANNEL`."""
    return f"c:{biz}:{biz_id}"


def flags_member(biz: str, biz_id: int, uid: int) -> str:
    """How a change of one user's flags on an object is announced on :data:`CHANNEL`."""
    return f"f:{biz}:{biz_id}:{uid}"


# The four possible flags, shared by every in-process entry.
_FLAGS = {
    (liked, collected): Flags(liked, collected)
    for liked in (False, True)
    for collected in (False, True)
}
CountsKey = tuple[str, int]
FlagsKey = tuple[str, int, int]


class LocalCounts(LocalTier):
    """Counts and flags in process memory, dropped when any replica announces a change.

    Args:
        redis: the client; the subscription takes one connection of its pool.
        counts_entries / flags_entries: entries kept at most (the oldest stored go first).
        max_age: seconds an entry is kept at most.
        stale_for: while Redis is unreachable, the entries kept are still answered (counted
            as stale) for this many seconds after the subscription last vouched for them
            (0, the default here: never; the service's settings default to 300 s); the
            subscription back drops them all.
        ping_interval / max_lag: the feed's health checks (:class:`InvalidationFeed`).

    Give it to :class:`CountsCache`; call :meth:`start` inside the running loop and
    :meth:`aclose` at shutdown. Until the subscription is confirmed nothing is kept.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        counts_entries: int = DEFAULT_LOCAL_COUNTS_ENTRIES,
        flags_entries: int = DEFAULT_LOCAL_FLAGS_ENTRIES,
        max_age: float = DEFAULT_LOCAL_MAX_AGE_SECONDS,
        stale_for: float = 0.0,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        max_lag: float = DEFAULT_MAX_LAG,
    ) -> None:
        self.counts: InvalidatedCache[CountsKey, Counts] = InvalidatedCache(
            max_entries=counts_entries,
            max_age=max_age,
            stale_for=stale_for,
            name=LOCAL_CACHE_NAME,
        )
        self.flags: InvalidatedCache[FlagsKey, Flags] = InvalidatedCache(
            max_entries=flags_entries,
            max_age=max_age,
            stale_for=stale_for,
            name=LOCAL_FLAGS_CACHE_NAME,
        )
        feed = InvalidationFeed(
            redis,
            CHANNEL,
            name=LOCAL_FEED_NAME,
            on_message=self._on_message,
            on_reset=self.clear,
            on_lost=self.lost,
            ping_interval=ping_interval,
            max_lag=max_lag,
        )
        super().__init__(feed, self.counts, self.flags)

    def clear(self) -> None:
        """Drop every entry and void every ticket."""
        self.counts.clear()
        self.flags.clear()

    def lost(self) -> None:
        """The subscription was lost: void every ticket, keep the entries as stale copies
        (dropped instead when ``stale_for`` is 0)."""
        self.counts.lost()
        self.flags.lost()

    def invalidate_counts(self, biz: str, biz_ids: Iterable[int]) -> None:
        """Drop the counts of these objects (and void tickets taken before)."""
        for biz_id in biz_ids:
            self.counts.invalidate((biz, biz_id))

    def invalidate_flags(self, keys: Iterable[FlagsKey]) -> None:
        """Drop these users' flags (and void tickets taken before)."""
        for key in keys:
            self.flags.invalidate(key)

    def _on_message(self, member: bytes) -> None:
        try:
            kind, biz, *ids = member.decode().split(":")
            if kind == "c" and len(ids) == 1:
                self.counts.invalidate((biz, int(ids[0])))
                return
            if kind == "f" and len(ids) == 2:
                self.flags.invalidate((biz, int(ids[0]), int(ids[1])))
                return
        except (UnicodeDecodeError, ValueError):
            pass
        # Not ours to understand: drop everything rather than keep what it may have changed.
        logger.warning(
            "unexpected invalidation; in-process counts dropped", extra={"member": repr(member)}
        )
        self.clear()


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
    being down.

    Args:
        redis: the client.
        ttl_seconds: lifetime of a counts or flags hash in Redis, or what to call for it
            at each write (a live setting).
        local: in-process copies in front of Redis (:class:`LocalCounts`); every write
            announces its changes whether or not this process keeps copies.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS,
        local: LocalCounts | None = None,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_reader(ttl_seconds)
        self._local = local
        self._incr: AsyncScript = redis.register_script(INCR_IF_CACHED)
        self._lookup: AsyncScript = redis.register_script(LOOKUP)
        self._fill_flags: AsyncScript = redis.register_script(FILL_FLAGS)
        self._counts_guard = CacheGuard(CACHE_NAME, redis=redis)
        self._flags_guard = CacheGuard(FLAGS_CACHE_NAME, redis=redis)
        self._local_counts_hit = CACHE_REQUESTS.labels(LOCAL_CACHE_NAME, "hit")
        self._local_counts_miss = CACHE_REQUESTS.labels(LOCAL_CACHE_NAME, "miss")
        self._local_flags_hit = CACHE_REQUESTS.labels(LOCAL_FLAGS_CACHE_NAME, "hit")
        self._local_flags_miss = CACHE_REQUESTS.labels(LOCAL_FLAGS_CACHE_NAME, "miss")

    @property
    def local(self) -> LocalCounts | None:
        """The in-process copies, if this cache keeps any."""
        return self._local

    async def lookup(self, biz: str, biz_id: int, uid: int) -> tuple[Counts | None, Flags | None]:
        """The object's counts and, for ``uid`` > 0, the user's flags: from process memory
        when both are there, else from Redis in one round trip (then kept in memory);
        ``None`` for what is not (completely) cached or when Redis fails."""
        local = self._local
        if local is None:
            return await self._lookup_redis(biz, biz_id, uid)
        counts_key_ = (biz, biz_id)
        counts = local.counts.get(counts_key_)
        if uid <= 0:
            if counts is not None:
                self._local_counts_hit.inc()
                return counts, None
            self._local_counts_miss.inc()
            ticket = local.counts.ticket()
            counts, _ = await self._lookup_redis(biz, biz_id, uid)
            if counts is not None:
                local.counts.put(counts_key_, counts, ticket)
            return counts, None
        flags_key_ = (biz, biz_id, uid)
        flags = local.flags.get(flags_key_)
        (self._local_counts_miss if counts is None else self._local_counts_hit).inc()
        (self._local_flags_miss if flags is None else self._local_flags_hit).inc()
        if counts is not None and flags is not None:
            return counts, flags
        counts_ticket, flags_ticket = local.counts.ticket(), local.flags.ticket()
        loaded_counts, loaded_flags = await self._lookup_redis(biz, biz_id, uid)
        if counts is None and loaded_counts is not None:
            local.counts.put(counts_key_, loaded_counts, counts_ticket)
        if flags is None and loaded_flags is not None:
            local.flags.put(flags_key_, loaded_flags, flags_ticket)
        # What Redis answered is at least as recent as the memory copy; the memory copy
        # still stands where Redis did not answer (it would have been dropped if changed).
        return (
            counts if loaded_counts is None else loaded_counts,
            flags if loaded_flags is None else loaded_flags,
        )

    async def _lookup_redis(
        self, biz: str, biz_id: int, uid: int
    ) -> tuple[Counts | None, Flags | None]:
        keys = [counts_key(biz, biz_id)]
        if uid > 0:
            keys.append(flags_key(biz, biz_id, uid))
        answer = await self._counts_guard.read(self._lookup(keys=keys))
        if answer is FAILED:
            return None, None
        try:
            values = _decode_fields(answer[0])
            flag_values = _decode_fields(answer[1]) if uid > 0 else None
        except DECODE_FAILURES:
            self._counts_guard.undecodable(keys[0])
            return None, None
        counts = None if values is None else Counts(*values)
        self._counts_guard.found(counts is not None)
        if uid <= 0:
            return counts, None
        flags = None if flag_values is None else _FLAGS[flag_values[0] == 1, flag_values[1] == 1]
        self._flags_guard.found(flags is not None)
        return counts, flags

    async def fill_flags(self, biz: str, biz_id: int, uid: int, flags: Flags) -> None:
        """Cache flags loaded from SQL, keeping any field a write has set meanwhile (a fill
        on the read path: it waits no longer than a read)."""
        try:
            fill = self._fill_flags(
                keys=[flags_key(biz, biz_id, uid)],
                args=[
                    int(flags.liked),
                    int(flags.collected),
                    self._ttl(),
                    CHANNEL,
                    flags_member(biz, biz_id, uid),
                ],
            )
            await self._flags_guard.fill("fill_flags", fill, biz=biz, ids=[biz_id])
        finally:
            if self._local is not None:
                self._local.invalidate_flags([(biz, biz_id, uid)])

    async def write_flags(self, updates: Sequence[FlagUpdate]) -> None:
        """Write committed flag values through and announce them (one MULTI); on failure,
        drop those hashes (announced too)."""
        if not updates:
            return
        keys = [flags_key(biz, biz_id, uid) for biz, biz_id, uid, _, _ in updates]
        members = [flags_member(biz, biz_id, uid) for biz, biz_id, uid, _, _ in updates]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, member, (_, _, _, field, value) in zip(
                    keys, members, updates, strict=True
                ):
                    pipe.hset(key, field, int(value))
                    pipe.expire(key, self._ttl())
                    pipe.publish(CHANNEL, member)
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._flags_guard.write_failed("write_flags", exc, keys=keys[:20])
            await self._flags_guard.write(
                "delete_flags", self._delete_announced(keys, members), keys=keys[:20]
            )
        finally:
            if self._local is not None:
                self._local.invalidate_flags((b, i, u) for b, i, u, _, _ in updates)

    async def _delete_announced(self, keys: Sequence[str], members: Sequence[str]) -> None:
        """``DEL`` the keys and announce the members, in one MULTI/EXEC."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            for member in members:
                pipe.publish(CHANNEL, member)
            await pipe.execute()

    async def get_many(self, biz: str, biz_ids: Sequence[int]) -> dict[int, Counts]:
        """The cached counts among ``biz_ids`` (one round trip); misses are absent."""
        if not biz_ids:
            return {}
        keys = [counts_key(biz, biz_id) for biz_id in biz_ids]
        answers = await self._counts_guard.read(self._hgetall(keys), lookups=len(keys))
        if answers is FAILED:
            return {}
        found: dict[int, Counts] = {}
        for biz_id, key, raw in zip(biz_ids, keys, answers, strict=True):
            try:
                counts = _decode(raw) if raw else None
            except DECODE_FAILURES:
                self._counts_guard.undecodable(key)
                continue
            self._counts_guard.found(counts is not None)
            if counts is not None:
                found[biz_id] = counts
        return found

    async def _hgetall(self, keys: Sequence[str]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            answers: list[Any] = await pipe.execute()
        return answers

    async def set_many(self, biz: str, counts: Mapping[int, Counts]) -> None:
        """Cache ``counts`` loaded from SQL with the TTL and announce them (one MULTI; a
        fill on the read path: it waits no longer than a read); failures are logged and
        counted."""
        if not counts:
            return
        try:
            await self._counts_guard.fill(
                "set", self._set_many(biz, counts), biz=biz, ids=list(counts)[:20]
            )
        finally:
            if self._local is not None:
                self._local.invalidate_counts(biz, counts)

    async def _set_many(self, biz: str, counts: Mapping[int, Counts]) -> None:
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
                pipe.expire(key, self._ttl())
                pipe.publish(CHANNEL, counts_member(biz, biz_id))
            await pipe.execute()

    async def incr_if_cached(self, biz: str, field: str, deltas: Mapping[int, int]) -> None:
        """Add ``deltas[biz_id]`` to ``field`` of each cached hash and announce every object
        (one round trip; each object's increment and announcement in one Lua call)."""
        if not deltas:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for biz_id, delta in deltas.items():
                    await self._incr(
                        keys=[counts_key(biz, biz_id)],
                        args=[field, delta, CHANNEL, counts_member(biz, biz_id)],
                        client=pipe,
                    )
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._counts_guard.write_failed("incr", exc, biz=biz, ids=list(deltas)[:20])
            await self.delete(biz, deltas)
        finally:
            if self._local is not None:
                self._local.invalidate_counts(biz, deltas)

    async def delete(self, biz: str, biz_ids: Iterable[int]) -> None:
        """Drop cached hashes and announce them (one MULTI); failures are logged and
        counted."""
        ids = list(biz_ids)
        if not ids:
            return
        keys = [counts_key(biz, biz_id) for biz_id in ids]
        try:
            await self._delete_announced(keys, [counts_member(biz, biz_id) for biz_id in ids])
        except _REDIS_FAILURES as exc:
            self._counts_guard.write_failed("delete", exc, keys=keys[:20])
        finally:
            if self._local is not None:
                self._local.invalidate_counts(biz, ids)
