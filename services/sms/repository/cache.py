"""Verification codes in Redis, each operation one Lua script so concurrent calls cannot race.

Per (biz, phone) there are two keys sharing a hash tag (so they live in one cluster slot):

- ``sms:code:{<biz>:<phone>}``: a hash ``{digest, left}`` (the code's keyed hash and the tries
  it has left) that expires with the code;
- ``sms:code:{<biz>:<phone>}:resend``: present while a new code may not be sent yet.

The code itself is never stored: only its HMAC (computed by the service).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.sms.code_service import CodeStoreUnavailable
from services.sms.domain import VerifyOutcome

# KEYS: code, resend guard. ARGV: digest, tries, ttl ms, resend interval ms.
# Returns 1 when stored, 0 when the resend guard is still there.
PUT_SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'left', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: code. ARGV: digest of the candidate.
# Returns 1 (right: the code is consumed), 0 (wrong or no code), -1 (no tries left).
CHECK_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then
  return 0
end
local left = tonumber(redis.call('HGET', KEYS[1], 'left'))
if left == nil or left <= 0 then
  return -1
end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'left', left - 1)
return 0
"""

# KEYS: code, resend guard. ARGV: digest. Deletes both only if the code is still this one.
DISCARD_SCRIPT = """
if redis.call('HGET', KEYS[1], 'digest') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


def code_key(biz: str, phone: str) -> str:
    """The Redis key of the code hash of ``(biz, phone)``."""
    return f"sms:code:{{{biz}:{phone}}}"


class RedisCodeStore:
    """The :class:`~services.sms.code_service.CodeStore` on Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._put = redis.register_script(PUT_SCRIPT)
        self._check = redis.register_script(CHECK_SCRIPT)
        self._discard = redis.register_script(DISCARD_SCRIPT)

    async def put(
        self,
        biz: str,
        phone: str,
        digest: str,
        *,
        ttl_s: float,
        resend_interval_s: float,
        max_attempts: int,
    ) -> bool:
        """Store a new code unless one was sent within the resend interval."""
        key = code_key(biz, phone)
        ttl_ms, interval_ms = int(ttl_s * 1000), int(resend_interval_s * 1000)
        args: list[str | int] = [digest, max_attempts, ttl_ms, interval_ms]
        try:
            stored = await self._put(keys=[key, f"{key}:resend"], args=args)
        except RedisError as exc:
            raise CodeStoreUnavailable(type(exc).__name__) from exc
        return bool(stored == 1)

    async def check(self, biz: str, phone: str, digest: str) -> VerifyOutcome:
        """Compare ``digest`` with the stored code, consuming it or a try."""
        try:
            answer = await self._check(keys=[code_key(biz, phone)], args=[digest])
        except RedisError as exc:
            raise CodeStoreUnavailable(type(exc).__name__) from exc
        if answer == 1:
            return VerifyOutcome.OK
        if answer == -1:
            return VerifyOutcome.TOO_MANY
        return VerifyOutcome.WRONG

    async def discard(self, biz: str, phone: str, digest: str) -> None:
        """Remove the code (and the resend guard) if it is still the one with ``digest``."""
        key = code_key(biz, phone)
        try:
            await self._discard(keys=[key, f"{key}:resend"], args=[digest])
        except RedisError as exc:
            raise CodeStoreUnavailable(type(exc).__name__) from exc
