"""Client-side rate limit per provider, shared by every instance through Redis.

A fixed window in one Lua script: the first send of a window creates the counter with the
window's expiry, later sends increment it, and sends past the limit are refused with
:class:`~services.sms.providers.port.ProviderRateLimited` (the failover moves on to another
provider, or the message is queued). If Redis cannot be reached the limiter lets the send
through: losing the limit for a while costs less than losing every message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.sms.providers.port import ProviderRateLimited, ProviderResult, SmsProvider

logger = logging.getLogger(__name__)

FIXED_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if count > tonumber(ARGV[1]) then
  return 0
end
return 1
"""


class RedisFixedWindowLimiter:
    """At most ``limit`` sends per ``window_s`` under ``key``, across all instances."""

    def __init__(self, redis: aioredis.Redis, key: str, limit: int, window_s: float) -> None:
        self.key = key
        self.limit = limit
        self.window_ms = max(1, int(window_s * 1000))
        self._script = redis.register_script(FIXED_WINDOW)

    async def allow(self) -> bool:
        """Take one send from the current window; ``False`` when it is used up."""
        try:
            allowed = await self._script(keys=[self.key], args=[self.limit, self.window_ms])
        except RedisError as exc:
            logger.warning(
                "rate limiter unavailable; letting the send through",
                extra={"key": self.key, "error": type(exc).__name__},
            )
            return True
        return bool(allowed == 1)


class RateLimitedProvider:
    """Refuses sends past the limiter's budget before they reach ``inner``."""

    def __init__(self, inner: SmsProvider, limiter: RedisFixedWindowLimiter) -> None:
        self._inner = inner
        self._limiter = limiter

    @property
    def name(self) -> str:
        """The wrapped provider's name."""
        return self._inner.name

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Send through ``inner`` if the window has budget left."""
        if not await self._limiter.allow():
            raise ProviderRateLimited(
                self.name,
                f"client-side limit of {self._limiter.limit} per {self._limiter.window_ms} ms",
            )
        return await self._inner.send(tpl_id, args, numbers)
