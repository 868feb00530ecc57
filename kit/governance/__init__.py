"""Service governance: each concern once, as a plain object, run by two composers.

The concerns: tracing (:class:`Tracing`), metrics (:class:`GovernanceMetrics`), load
shedding (:class:`LoadShedder`), per-method rate limits (:class:`RateLimiter`), deadline
propagation (:class:`Deadlines`) and circuit breaking (:class:`CircuitBreaker`, SRE adaptive
throttling with fallbacks), and who may call what (:class:`Authorizer`, from the callers
each rpc declares in its proto; docs/security.md). The composers:
:class:`GovernedServerInterceptor`, the one server interceptor of a service process (tracing
→ metrics → authorization → shedding → rate limit → deadline → [inner interceptors] → error
mapping), and :class:`UnaryClientPolicy`, run by a
balanced channel around each call (tracing → metrics → deadline → breaker). Both read a
:class:`GovernanceConfig`; see ``docs/governance.md``.

Errors raised locally on the client subclass ``grpc.aio.AioRpcError``: ``BreakerOpenError``
(UNAVAILABLE) and ``DeadlineExceededError`` (DEADLINE_EXCEEDED).
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from kit.governance.authz import (
        USER_ASSERTERS,
        Authorizer,
        AuthzMetrics,
        MethodPolicy,
        declared_policy,
        markdown_table,
    )

# kit.governance.authz is imported on first use, not here: ``python -m kit.governance.authz``
# would otherwise find it already imported by this package and warn of the double import.
_AUTHZ = frozenset(
    {
        "USER_ASSERTERS",
        "Authorizer",
        "AuthzMetrics",
        "MethodPolicy",
        "declared_policy",
        "markdown_table",
    }
)


def __getattr__(name: str) -> Any:
    if name in _AUTHZ:
        from kit.governance import authz

        return getattr(authz, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLIENT_ERROR_CODES",
    "DEFAULT_FAILURE_CODES",
    "EXEMPT_PREFIXES",
    "USER_ASSERTERS",
    "AdaptiveThrottle",
    "Authorizer",
    "AuthzMetrics",
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
    "MethodPolicy",
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
    "declared_policy",
    "default_metrics",
    "markdown_table",
    "remaining_time",
    "reset_deadline",
    "set_deadline",
]
