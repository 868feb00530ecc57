"""Rate limiting: five algorithms, each in-process and in Redis, behind one port.

- :class:`Limiter` (``acquire(key, cost=1) -> Decision``) is the port; :class:`Quota` says
  what a key may use; :class:`Algorithm` names the algorithms.
- In-process (:mod:`kit.ratelimit.local`): per-key state in a bounded dict, injectable clock.
- Redis (:mod:`kit.ratelimit.redis_limiters`): one atomic Lua script per check, or per batch
  of concurrent checks; server time; every key expires.
- :class:`ResilientLimiter`: a failure policy (fail open, fail closed, in-process fallback)
  while Redis is unreachable.
- :class:`TokenBucket`: the single-bucket building block (also used by the server's
  per-method rate limiter, ``kit.governance.RateLimiter``).
"""

from kit.ratelimit.base import Algorithm, Decision, Limiter, Quota, RateLimitBackendError
from kit.ratelimit.coalesce import Coalescer
from kit.ratelimit.local import (
    LOCAL_LIMITERS,
    LocalFixedWindow,
    LocalLeakyBucket,
    LocalLimiter,
    LocalSlidingWindowCounter,
    LocalSlidingWindowLog,
    LocalTokenBucket,
)
from kit.ratelimit.redis_limiters import (
    REDIS_LIMITERS,
    RedisFixedWindow,
    RedisLeakyBucket,
    RedisLimiter,
    RedisSlidingWindowCounter,
    RedisSlidingWindowLog,
    RedisTokenBucket,
)
from kit.ratelimit.resilient import FailurePolicy, ResilientLimiter
from kit.ratelimit.token_bucket import Clock, TokenBucket

__all__ = [
    "LOCAL_LIMITERS",
    "REDIS_LIMITERS",
    "Algorithm",
    "Clock",
    "Coalescer",
    "Decision",
    "FailurePolicy",
    "Limiter",
    "LocalFixedWindow",
    "LocalLeakyBucket",
    "LocalLimiter",
    "LocalSlidingWindowCounter",
    "LocalSlidingWindowLog",
    "LocalTokenBucket",
    "Quota",
    "RateLimitBackendError",
    "RedisFixedWindow",
    "RedisLeakyBucket",
    "RedisLimiter",
    "RedisSlidingWindowCounter",
    "RedisSlidingWindowLog",
    "RedisTokenBucket",
    "ResilientLimiter",
    "TokenBucket",
]
