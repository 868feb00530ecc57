"""The per-account login throttle in Redis (:class:`~services.user.service.LoginThrottle`).

One hash per account, ``user:login:{<sha256 of the email>}`` (the address itself is never
written to Redis), with fields ``since`` and ``tries`` (attempts in the current window,
in-flight ones included), ``lockouts`` (locks so far) and ``until`` (locked until, ms). Times
come from the service's clock, so tests move time without sleeping; the key expires
``memory`` after the last attempt. Each operation is one Lua script: concurrent attempts can
neither slip past the limit nor lose a count.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.user.domain import LoginThrottleRules
from services.user.service import ThrottleUnavailable

# KEYS: state. ARGV: now ms, max failures, window ms, memory ms.
# Returns 0 when the attempt may go ahead (and counts it), else ms until one may.
BEGIN_SCRIPT = """
local now = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'until', 'since', 'tries')
local locked_until = tonumber(state[1]) or 0
if locked_until > now then
  return locked_until - now
end
local window = tonumber(ARGV[3])
local since = tonumber(state[2])
local tries = tonumber(state[3]) or 0
if since == nil or now - since >= window then
  since = now
  tries = 0
end
if tries >= tonumber(ARGV[2]) then
  -- Only concurrent attempts get here: the last failure would have locked the account.
  return math.max(since + window - now, 1)
end
redis.call('HSET', KEYS[1], 'since', string.format('%d', since), 'tries', tries + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""

# KEYS: state. ARGV: now ms, max failures, lock ms, max lock ms, memory ms.
# Returns the ms the account is locked for from now (0: not locked).
FAILED_SCRIPT = """
local now = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'until', 'tries', 'lockouts')
local locked_until = tonumber(state[1]) or 0
if locked_until > now then
  return locked_until - now
end
if (tonumber(state[2]) or 0) < tonumber(ARGV[2]) then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
  return 0
end
local lockouts = (tonumber(state[3]) or 0) + 1
local lock = math.min(tonumber(ARGV[3]) * 2 ^ (lockouts - 1), tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'until', string.format('%d', now + lock), 'lockouts', lockouts,
  'since', string.format('%d', now), 'tries', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return lock
"""


def throttle_key(account: str) -> str:
    """The Redis key of an account's login state (``account`` is already a digest)."""
    return f"user:login:{{{account}}}"


class RedisLoginThrottle:
    """Failures per account with exponential lock times, shared by every instance."""

    def __init__(self, redis: aioredis.Redis, rules: LoginThrottleRules) -> None:
        self._redis = redis
        self._rules = rules
        self._begin = redis.register_script(BEGIN_SCRIPT)
        self._failed = redis.register_script(FAILED_SCRIPT)

    async def begin(self, account: str, now_ms: int) -> int:
        """0 if an attempt may go ahead (it counts as a failure until it succeeds)."""
        rules = self._rules
        args = [now_ms, rules.max_failures, _ms(rules.window_s), _ms(rules.memory_s)]
        try:
            wait = await self._begin(keys=[throttle_key(account)], args=args)
        except RedisError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from exc
        return int(wait)

    async def failed(self, account: str, now_ms: int) -> int:
        """Record a wrong password; how many ms the account is locked for from now."""
        rules = self._rules
        args = [
            now_ms,
            rules.max_failures,
            _ms(rules.lock_s),
            _ms(rules.max_lock_s),
            _ms(rules.memory_s),
        ]
        try:
            lock = await self._failed(keys=[throttle_key(account)], args=args)
        except RedisError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from exc
        return int(lock)

    async def succeeded(self, account: str) -> None:
        """Forget the account's failures and locks."""
        try:
            await self._redis.delete(throttle_key(account))
        except RedisError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from exc


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
