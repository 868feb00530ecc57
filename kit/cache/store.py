"""Redis cache wrappers that never fail a request.

- :class:`CacheGuard` is the error policy of one named cache: a Redis error on read is a
  miss (logged at debug, counted as ``webook_cache_requests_total{result="error"}``); a
  failed write or delete is logged and counted in ``webook_cache_write_errors_total``,
  never raised (the TTL bounds how long a copy that could not be replaced stays stale).
  Given the client, its reads (and fills, :meth:`CacheGuard.fill`) are reads with a
  fallback (:func:`kit.redisx.fallback_reads`): a silent Redis costs them milliseconds,
  not a socket timeout. Caches with their own Redis layout (hashes, Lua scripts) run their
  calls through it.
- :class:`RedisCache` stores values under string keys or hash fields with a TTL per write,
  as versioned JSON (:class:`JsonCodec`): a payload written by another schema version
  reads as a miss, an undecodable one as an error and a miss, so a deploy that changes a
  layout never crashes a reader and never serves the old shape.

Why a wrapper: a cache only saves reading the database, so an outage of the cache must
cost a database read, not a request.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Generic, Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from kit.redisx import FallbackRead, fallback_reads

logger = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

# Connection failures surface as redis ConnectionError/TimeoutError, sometimes as bare OSError.
REDIS_FAILURES: Final = (RedisError, OSError)
# What a codec raises for a value that is not what it expects.
DECODE_FAILURES: Final = (ValueError, KeyError, TypeError, IndexError)
VERSION_FIELD: Final = "v"


class Failed(enum.Enum):
    """The answer of a read that Redis failed (as opposed to a miss)."""

    FAILED = "failed"


FAILED: Final = Failed.FAILED


class CacheGuard:
    """Counts and logs one named cache's lookups and failures; swallows Redis errors.

    ``name`` is the ``cache`` label of the metrics; with ``redis`` (the client the calls
    go to), :meth:`read` and :meth:`fill` wait no longer than a read with a fallback.
    """

    def __init__(self, name: str, *, redis: object = None) -> None:
        self.name = name
        self._bounded: FallbackRead | None = None if redis is None else fallback_reads(redis)
        self._hit = CACHE_REQUESTS.labels(name, "hit")
        self._miss = CACHE_REQUESTS.labels(name, "miss")
        self._error = CACHE_REQUESTS.labels(name, "error")

    def hit(self, count: int = 1) -> None:
        """Count ``count`` lookups answered from the cache."""
        self._hit.inc(count)

    def miss(self, count: int = 1) -> None:
        """Count ``count`` lookups the cache did not have."""
        self._miss.inc(count)

    def found(self, hit: bool) -> None:
        """Count one lookup as a hit or a miss."""
        (self._hit if hit else self._miss).inc()

    def error(self, count: int = 1) -> None:
        """Count ``count`` lookups that failed (answered as misses)."""
        self._error.inc(count)

    def undecodable(self, key: str) -> None:
        """Count and log a cached value that could not be decoded (answered as a miss)."""
        logger.warning("undecodable cache entry; reading the database", extra={"key": key})
        self._error.inc()

    async def read(self, call: Awaitable[T], *, lookups: int = 1) -> T | Literal[Failed.FAILED]:
        """``await call``; on a Redis failure :data:`FAILED`, with ``lookups`` errors counted."""
        try:
            return await (call if self._bounded is None else self._bounded(call))
        except REDIS_FAILURES as exc:
            self.read_failed(exc, lookups)
            return FAILED

    def read_failed(self, exc: BaseException, lookups: int = 1) -> None:
        """Log (at debug: an outage would log every request) and count a failed read."""
        logger.debug(
            "cache read failed; reading the database",
            extra={"cache": self.name, "error": repr(exc)},
        )
        self._error.inc(lookups)

    async def write(self, op: str, call: Awaitable[object], **context: Any) -> bool:
        """``await call``; whether it succeeded (a failure is logged with ``context`` and
        counted under ``op``, never raised)."""
        try:
            await call
        except REDIS_FAILURES as exc:
            self.write_failed(op, exc, **context)
            return False
        return True

    async def fill(self, op: str, call: Awaitable[object], **context: Any) -> bool:
        """:meth:`write` for a write that only saves later reads the database (a cache fill
        on a read path): it waits no longer than a read with a fallback."""
        if self._bounded is None:
            return await self.write(op, call, **context)
        return await self.write(op, self._bounded(call), **context)

    def write_failed(self, op: str, exc: BaseException, **context: Any) -> None:
        """Log and count a failed write or delete."""
        logger.warning(
            "cache write failed",
            extra={"cache": self.name, "op": op, "error": repr(exc), **context},
        )
        CACHE_WRITE_ERRORS.labels(self.name, op).inc()


class JsonCodec(Generic[V]):
    """Values of one kind as versioned JSON objects ``{"v": version, ...}``.

    Args:
        encode: the JSON object of a value (must not use the key ``"v"``).
        decode: the value of such an object; raises ``ValueError``/``KeyError``/
            ``TypeError`` for one that is not a value.
        version: bump it whenever the layout changes; payloads of other versions decode
            to ``None``.
    """

    def __init__(
        self,
        *,
        encode: Callable[[V], dict[str, Any]],
        decode: Callable[[dict[str, Any]], V],
        version: int = 1,
    ) -> None:
        self._encode = encode
        self._decode = decode
        self.version = version

    def dumps(self, value: V) -> str:
        """The stored form of ``value``: its JSON object with the version."""
        return json.dumps(
            {VERSION_FIELD: self.version, **self._encode(value)},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def loads(self, raw: bytes | str) -> V | None:
        """The value stored in ``raw``; ``None`` if another version wrote it. Raises one of
        :data:`DECODE_FAILURES` for a payload that is not a value."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a cached value is a JSON object, not {type(data).__name__}")
        if data.get(VERSION_FIELD) != self.version:
            return None
        return self._decode(data)


class RedisCache(Generic[V]):
    """Values of one kind in Redis, stored by a :class:`JsonCodec`, with a TTL per write.

    Args:
        redis: the client.
        name: the ``cache`` label of the metrics.
        codec: how values are stored.
        ttl_seconds: the TTL of writes that give none.

    A value lives under a key (``GET``/``SET``) or, with ``field``, under a field of a hash
    (``HGET``/``HSET``, the TTL then set on the whole hash).
    """

    def __init__(
        self, redis: aioredis.Redis, *, name: str, codec: JsonCodec[V], ttl_seconds: int
    ) -> None:
        self.redis = redis
        self.guard = CacheGuard(name, redis=redis)
        self.codec = codec
        self.ttl_seconds = ttl_seconds

    def _answer(self, key: str, raw: bytes | str | None) -> V | None:
        if raw is None:
            self.guard.miss()
            return None
        try:
            value = self.codec.loads(raw)
        except DECODE_FAILURES:
            self.guard.undecodable(key)
            return None
        self.guard.found(value is not None)
        return value

    async def lookup(self, key: str, *, field: str | None = None) -> V | Failed | None:
        """The cached value, ``None`` on a miss, :data:`FAILED` when Redis failed."""
        call = self.redis.get(key) if field is None else self.redis.hget(key, field)
        raw: bytes | str | Failed | None = await self.guard.read(call)
        if raw is FAILED:
            return FAILED
        return self._answer(key, raw)

    async def get(self, key: str, *, field: str | None = None) -> V | None:
        """The cached value, or ``None`` on a miss or any failure."""
        value = await self.lookup(key, field=field)
        return None if value is FAILED else value

    async def get_many(self, keys: Sequence[str]) -> list[V | None]:
        """The cached values of ``keys`` in order (one ``MGET``); misses and failures are
        ``None``."""
        if not keys:
            return []
        raws = await self.guard.read(self.redis.mget(keys), lookups=len(keys))
        if raws is FAILED:
            return [None] * len(keys)
        return [self._answer(key, raw) for key, raw in zip(keys, raws, strict=True)]

    async def set(
        self,
        key: str,
        value: V,
        *,
        field: str | None = None,
        ttl_seconds: int | None = None,
        fill: bool = False,
    ) -> bool:
        """Store ``value`` for ``ttl_seconds`` (default: the cache's); whether it was stored
        (a failure is logged and counted). ``fill``: a value just read from the database
        (:meth:`CacheGuard.fill`: waits no longer than a read)."""
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        payload = self.codec.dumps(value)
        write = self.guard.fill if fill else self.guard.write
        if field is None:
            return await write("set", self.redis.set(key, payload, ex=ttl), key=key)
        return await write("set", self._hset(key, field, payload, ttl), key=key)

    async def _hset(self, key: str, field: str, payload: str, ttl: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, payload)
            pipe.expire(key, ttl)
            await pipe.execute()

    async def set_many(
        self,
        items: Iterable[tuple[str, V]],
        *,
        ttl_seconds: int | None = None,
        fill: bool = False,
    ) -> bool:
        """Store every ``(key, value)`` in one round trip; whether they were stored.
        ``fill``: as for :meth:`set`."""
        batch = [(key, self.codec.dumps(value)) for key, value in items]
        if not batch:
            return True
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        write = self.guard.fill if fill else self.guard.write
        return await write("set", self._set_many(batch, ttl), keys=[key for key, _ in batch][:20])

    async def _set_many(self, batch: Sequence[tuple[str, str]], ttl: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, payload in batch:
                pipe.set(key, payload, ex=ttl)
            await pipe.execute()

    async def delete(self, keys: Iterable[str]) -> bool:
        """Drop ``keys`` (whole hashes included); whether that worked."""
        batch = list(keys)
        if not batch:
            return True
        return await self.guard.write("delete", self.redis.delete(*batch), keys=batch[:20])
