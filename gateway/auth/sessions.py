"""Session revocation in Redis: how stateless JWTs can still be logged out.

Every token carries its session id (``ssid``). Logging out, or rotating a refresh token,
writes ``users:ssid:<ssid>`` with a lifetime of the refresh TTL (no token of the session
outlives it); a token whose session key exists is refused. Only revoked sessions are
stored, so a login costs no Redis write.

When Redis fails, :class:`SessionRevocations` applies the configured fallback: ``deny``
(treat the session as revoked: safe, the default) or ``allow`` (treat it as live: available).
The outage is logged once when it starts and once when it ends, and every affected check is
counted in ``webook_gateway_session_store_errors_total``.

**Checks answered from memory, kept exact by pub/sub** (``feed=True``, the gateway's
default). A revocation writes the key and publishes the session id on
:data:`REVOKED_CHANNEL` in one MULTI/EXEC transaction; every gateway process subscribes
(:class:`kit.cache.invalidation.InvalidationFeed`) and drops the session from its cache of
check answers when the message arrives. So a busy session costs one Redis round trip per
process, not one per request, and a logout through any gateway stops both tokens on every
gateway as soon as the message is delivered (milliseconds). On any doubt the cache is not
used and every check asks Redis: before the subscription is confirmed, after an error or a
reconnect (the cache is emptied), and when the subscribed connection has not answered a ping
sent in the last ``feed_max_lag`` seconds (1 s: the bound on staleness if the connection
stalls silently). Only answers Redis gave are cached, never the fallback of an outage; the
cache holds at most 100 000 sessions.

Without the feed, checks may instead be cached for ``cache_ttl`` seconds (at most 1) per
session id: a session revoked by *another* gateway process is then still accepted here for
at most that long. Either way a revocation through this process takes effect here at once
for the requests that start after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.settings import SessionCheckFallback
from kit.cache.invalidation import InvalidatedCache, InvalidationFeed, publish_invalidation
from kit.errors import Unavailable

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "users:ssid:"
# Where revoked session ids are announced to every gateway process.
REVOKED_CHANNEL: Final = "webook:gateway:sessions:revoked"
# Most session ids the check cache holds; beyond, it is emptied (a burst of new sessions).
CACHE_MAX_ENTRIES: Final = 100_000

SESSION_STORE_ERRORS = Counter(
    "webook_gateway_session_store_errors_total",
    "Session revocation checks or writes that failed because Redis did not answer.",
    ["operation", "fallback"],
)


class SessionStoreUnavailable(Unavailable):
    """A revocation could not be recorded because Redis is unreachable."""


class SessionRevocations:
    """The set of revoked session ids, kept in Redis.

    Args:
        redis: the client; owned by the caller.
        ttl: how long a revocation is remembered (the refresh-token lifetime).
        on_error: ``deny`` or ``allow`` a session whose state cannot be read.
        cache_ttl: without ``feed``, seconds a check's answer is reused for the same session
            id (0: never); see the module docstring.
        feed: cache check answers until a revocation is announced on
            :data:`REVOKED_CHANNEL` (call :meth:`start` and :meth:`aclose`).
        feed_max_lag: seconds the subscription may go unconfirmed before checks ask Redis.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: timedelta,
        on_error: SessionCheckFallback,
        cache_ttl: float = 0.0,
        feed: bool = False,
        feed_max_lag: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0:
            raise ValueError("cache_ttl must not be negative")
        self._redis = redis
        self._ttl = max(1, int(ttl.total_seconds()))
        self._on_error = on_error
        self._outage = False
        self._clock = clock
        self._cache_ttl = 0.0 if feed else cache_ttl
        # ssid -> (whether active, when the answer expires); the TTL cache, without the feed.
        self._cache: dict[str, tuple[bool, float]] = {}
        # ssid -> whether active; the exact cache, with the feed.
        self._checked: InvalidatedCache[str, bool] | None = None
        self._feed: InvalidationFeed | None = None
        if feed:
            checked: InvalidatedCache[str, bool] = InvalidatedCache(
                max_entries=CACHE_MAX_ENTRIES, max_age=float(self._ttl), clock=clock
            )
            self._feed = InvalidationFeed(
                redis,
                REVOKED_CHANNEL,
                name="gateway_sessions",
                on_message=lambda ssid: checked.invalidate(ssid.decode()),
                on_reset=checked.clear,
                max_lag=feed_max_lag,
                clock=clock,
            )
            checked.attach(self._feed)
            self._checked = checked

    @property
    def feed(self) -> InvalidationFeed | None:
        """The revocation subscription (None when checks are not cached that way)."""
        return self._feed

    def start(self) -> None:
        """Subscribe to revocations (inside the running loop); no-op without the feed."""
        if self._feed is not None:
            self._feed.start()

    async def aclose(self) -> None:
        """Unsubscribe; checks ask Redis from now on."""
        if self._feed is not None:
            await self._feed.aclose()

    async def is_active(self, ssid: str) -> bool:
        """Whether the session has not been revoked (see the module docstring for caching)."""
        checked = self._checked
        ticket = 0
        if checked is not None:
            known = checked.get(ssid)
            if known is not None:
                return known
            ticket = checked.ticket()
        elif self._cache_ttl:
            cached = self._cache.get(ssid)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
        try:
            revoked = await self._redis.exists(KEY_PREFIX + ssid)
        except (RedisError, OSError) as exc:
            return self._fallback("check", exc)
        self._recovered()
        active = not revoked
        if checked is not None:
            checked.put(ssid, active, ticket)
        elif self._cache_ttl:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[ssid] = (active, self._clock() + self._cache_ttl)
        return active

    async def revoke(self, ssid: str) -> None:
        """End the session: every token carrying ``ssid`` is refused from now on.

        Raises:
            SessionStoreUnavailable: Redis did not record it.
        """
        try:
            await self._write(ssid, nx=False)
        except (RedisError, OSError) as exc:
            self._report("revoke", exc)
            raise SessionStoreUnavailable(
                "SESSION_STORE_UNAVAILABLE", "session store unavailable"
            ) from exc
        self._forget(ssid)
        self._recovered()

    async def revoke_if_active(self, ssid: str) -> bool:
        """Revoke the session unless it already was; True if this call revoked it.

        One atomic ``SET NX``, so two concurrent refreshes with the same token cannot both
        succeed.
        """
        try:
            created = await self._write(ssid, nx=True)
        except (RedisError, OSError) as exc:
            return self._fallback("rotate", exc)
        self._forget(ssid)
        self._recovered()
        return created

    async def _write(self, ssid: str, *, nx: bool) -> bool:
        """Record the revocation; True if the key was created (always, unless ``nx``)."""
        key = KEY_PREFIX + ssid
        if self._feed is None:
            return bool(await self._redis.set(key, 1, ex=self._ttl, nx=nx))
        # The key and its announcement in one transaction: never one without the other.
        # Announcing an already revoked session again (a lost NX race) is harmless.
        command: tuple[object, ...] = ("SET", key, 1, "EX", self._ttl, *(("NX",) if nx else ()))
        replies = await publish_invalidation(self._redis, REVOKED_CHANNEL, ssid, command)
        return bool(replies[0])

    def _forget(self, ssid: str) -> None:
        self._cache.pop(ssid, None)
        if self._checked is not None:
            self._checked.invalidate(ssid)

    def _fallback(self, operation: str, exc: BaseException) -> bool:
        self._report(operation, exc)
        return self._on_error == "allow"

    def _report(self, operation: str, exc: BaseException) -> None:
        SESSION_STORE_ERRORS.labels(operation, self._on_error).inc()
        if not self._outage:
            self._outage = True
            logger.warning(
                "session store unreachable; sessions are %s until it recovers",
                "denied" if self._on_error == "deny" else "allowed unchecked",
                extra={"operation": operation, "error": repr(exc), "fallback": self._on_error},
            )

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            logger.info("session store reachable again")
