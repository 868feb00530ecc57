"""The global daily SMS budget in Redis: one counter per UTC day, checked and counted at once.

Key ``sms:daily:{<YYYY-MM-DD>}``, an integer that expires two days after it was created (the
day and a margin for clocks); every instance counts into the same key, and one Lua script
refuses a send that would pass the limit without counting it, so concurrent sends can never
take the count over the limit together.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.sms.sms_service import BudgetUnavailable

# KEYS: the day's counter. ARGV: count, limit, expiry ms.
# Returns {1, used} when counted, {0, used} when it would pass the limit (nothing counted).
TAKE_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local count = tonumber(ARGV[1])
if used + count > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], count)
if used == count then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, used}
"""

# KEYS: the day's counter. ARGV: count. Never below zero; an expired day stays gone.
GIVE_BACK_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used <= 0 then
  return 0
end
return redis.call('DECRBY', KEYS[1], math.min(used, tonumber(ARGV[1])))
"""

DAY_KEY_TTL_MS = 2 * 86_400_000


def daily_key(day: str) -> str:
    """The Redis key counting the messages of ``day`` (``YYYY-MM-DD``, UTC)."""
    return f"sms:daily:{{{day}}}"


class RedisDailyBudget:
    """The :class:`~services.sms.sms_service.SendBudget` on Redis."""

    def __init__(self, redis: aioredis.Redis, limit: int) -> None:
        self._limit = limit
        self._take = redis.register_script(TAKE_SCRIPT)
        self._give_back = redis.register_script(GIVE_BACK_SCRIPT)

    @property
    def limit(self) -> int:
        """Messages allowed per UTC day."""
        return self._limit

    async def take(self, day: str, count: int) -> tuple[bool, int]:
        """Count ``count`` messages on ``day`` unless that passes the limit."""
        try:
            taken, used = await self._take(
                keys=[daily_key(day)], args=[count, self._limit, DAY_KEY_TTL_MS]
            )
        except RedisError as exc:
            raise BudgetUnavailable(type(exc).__name__) from exc
        return bool(taken), int(used)

    async def give_back(self, day: str, count: int) -> None:
        """Uncount ``count`` messages of ``day``."""
        try:
            await self._give_back(keys=[daily_key(day)], args=[count])
        except RedisError as exc:
            raise BudgetUnavailable(type(exc).__name__) from exc
