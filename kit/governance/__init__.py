"""Service governance: each concern once, as a plain object, run by two composers.

The concerns: tracing (:class:`Tracing`), metrics (:class:`GovernanceMetrics`), load
shedding (:class:`LoadShedder`), per-method rate limits (:class:`RateLimiter`), deadline
propagation (:class:`Deadlines`) and circuit breaking (:class:`CircuitBreaker`, SRE adaptive
throttling with fallbacks). The composers: :class:`GovernedServerInterceptor`, the one
server interceptor of a service process (tracing → metrics → shedding → rate limit →
deadline → [inner interceptors] → error mapping), and :class:`UnaryClientPolicy`, run by a
balanced channel around each call (tracing → metrics → deadline → breaker). Both read a
:class:`GovernanceConfig`; see ``docs/governance.md``.

Errors raised locally on the client subclass ``grpc.aio.AioRpcError``: ``BreakerOpenError``
(UNAVAILABLE) and ``DeadlineExceededError`` (DEADLINE_EXCEEDED).
"""

from kit.governance._rpc import EXEMPT_PREFIXES
from kit.governance.breaker import (
    CLIENT_ERROR_CODES,
    DEFAULT_FAILURE_CODES,
    AdaptiveThrottle,
    BreakerConfig,
    BreakerOpenError,
    CircuitBreaker,
    Fallback,
    SlidingWindow,
    counts_against,
)
from kit.governance.client import UnaryClientPolicy
from kit.governance.config import GovernanceConfig
from kit.governance.context import (
    current_deadline,
    deadline_after,
    remaining_time,
    reset_deadline,
    set_deadline,
)
from kit.governance.deadline import DeadlineConfig, DeadlineExceededError, Deadlines
from kit.governance.metrics import GovernanceMetrics, MethodMetrics, default_metrics
from kit.governance.ratelimit import RateLimit, RateLimitConfig, RateLimiter
from kit.governance.server import ErrorMapper, GovernedServerInterceptor, aclose_interceptors
from kit.governance.shedding import CpuSampler, LoadShedder, SheddingConfig
from kit.governance.tracing import Tracing

__all__ = [
    "CLIENT_ERROR_CODES",
    "DEFAULT_FAILURE_CODES",
    "EXEMPT_PREFIXES",
    "AdaptiveThrottle",
    "BreakerConfig",
    "BreakerOpenError",
    "CircuitBreaker",
    "CpuSampler",
    "DeadlineConfig",
    "DeadlineExceededError",
    "Deadlines",
    "ErrorMapper",
    "Fallback",
    "GovernanceConfig",
    "GovernanceMetrics",
    "GovernedServerInterceptor",
    "LoadShedder",
    "MethodMetrics",
    "RateLimit",
    "RateLimitConfig",
    "RateLimiter",
    "SheddingConfig",
    "SlidingWindow",
    "Tracing",
    "UnaryClientPolicy",
    "aclose_interceptors",
    "counts_against",
    "current_deadline",
    "deadline_after",
    "default_metrics",
    "remaining_time",
    "reset_deadline",
    "set_deadline",
]
