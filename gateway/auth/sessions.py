"""Session revocation in Redis: how stateless JWTs can still be logged out.

Every token carries its session id (``ssid``). Logging out, or rotating a refresh token,
writes ``users:ssid:<ssid>`` with a lifetime of the refresh TTL (no token of the session
outlives it); a token whose session key exists is refused. Only revoked sessions are
stored, so a login costs no Redis write.

When Redis fails, :class:`SessionRevocations` applies the configured fallback: ``deny``
(treat the session as revoked: safe, the default) or ``allow`` (treat it as live: available).
The outage is logged once when it starts and once when it ends, and every affected check is
counted in ``webook_gateway_session_store_errors_total``.

Checks are cached in process for ``cache_ttl`` seconds (1 s in the gateway) per session id,
which saves a Redis round trip on almost every request of a busy session. The trade-off: a
session revoked by *another* gateway process is still accepted here for at most
``cache_ttl`` seconds; a revocation through this process takes effect at once for the
requests that start after it (the entry is dropped once Redis has recorded it). Only
answers Redis gave are cached, never the fallback of an outage.
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
from kit.errors import Unavailable

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "users:ssid:"
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
        cache_ttl: seconds a check's answer is reused for the same session id (0: never);
            see the module docstring.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: timedelta,
        on_error: SessionCheckFallback,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0:
            raise ValueError("cache_ttl must not be negative")
        self._redis = redis
        self._ttl = max(1, int(ttl.total_seconds()))
        self._on_error = on_error
        self._outage = False
        self._cache_ttl = cache_ttl
        self._clock = clock
        # ssid -> (whether active, when the answer expires)
        self._cache: dict[str, tuple[bool, float]] = {}

    async def is_active(self, ssid: str) -> bool:
        """Whether the session has not been revoked (at most ``cache_ttl`` seconds stale)."""
        if self._cache_ttl:
            cached = self._cache.get(ssid)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
        try:
            revoked = await self._redis.exists(KEY_PREFIX + ssid)
        except (RedisError, OSError) as exc:
            return self._fallback("check", exc)
        self._recovered()
        active = not revoked
        if self._cache_ttl:
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
            await self._redis.set(KEY_PREFIX + ssid, 1, ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._report("revoke", exc)
            raise SessionStoreUnavailable(
                "SESSION_STORE_UNAVAILABLE", "session store unavailable"
            ) from exc
        self._cache.pop(ssid, None)
        self._recovered()

    async def revoke_if_active(self, ssid: str) -> bool:
        """Revoke the session unless it already was; True if this call revoked it.

        One atomic ``SET NX``, so two concurrent refreshes with the same token cannot both
        succeed.
        """
        try:
            created = await self._redis.set(KEY_PREFIX + ssid, 1, ex=self._ttl, nx=True)
        except (RedisError, OSError) as exc:
            return self._fallback("rotate", exc)
        self._cache.pop(ssid, None)
        self._recovered()
        return bool(created)

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
