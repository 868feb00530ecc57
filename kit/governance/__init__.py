"""Service governance as ``grpc.aio`` interceptors, one concern each.

Server side: tracing, metrics, load shedding, per-method rate limits, deadline capture.
Client side: tracing, metrics, deadline propagation, circuit breaking (SRE adaptive
throttling) with fallbacks. ``server_interceptors`` and ``client_interceptors`` assemble the
default ordered chains from a ``GovernanceConfig``; ``GovernedServerInterceptor`` is the
server chain fused into one interceptor (what ``kit.grpcx`` servers use);
``UnaryClientPolicy`` runs the client chain around a balanced channel's unary calls without
grpc.aio interceptors (the fast path ``kit.grpcx.client.ServiceClients`` uses); see
``docs/governance.md``.

Errors raised locally by client interceptors subclass ``grpc.aio.AioRpcError``:
``BreakerOpenError`` (UNAVAILABLE) and ``DeadlineExceededError`` (DEADLINE_EXCEEDED).
"""

from kit.governance._rpc import EXEMPT_PREFIXES
from kit.governance.breaker import (
    DEFAULT_FAILURE_CODES,
    AdaptiveThrottle,
    BreakerConfig,
    BreakerOpenError,
    CircuitBreakerInterceptor,
    Fallback,
    SlidingWindow,
)
from kit.governance.chain import (
    GovernanceConfig,
    aclose_interceptors,
    client_chain,
    client_interceptors,
    server_interceptors,
)
from kit.governance.client import UnaryClientPolicy
from kit.governance.context import (
    current_deadline,
    deadline_after,
    remaining_time,
    reset_deadline,
    set_deadline,
)
from kit.governance.deadline import (
    ClientDeadlineInterceptor,
    DeadlineConfig,
    DeadlineExceededError,
    ServerDeadlineInterceptor,
)
from kit.governance.metrics import (
    ClientMetricsInterceptor,
    GovernanceMetrics,
    ServerMetricsInterceptor,
    default_metrics,
)
from kit.governance.ratelimit import RateLimit, RateLimitConfig, RateLimitInterceptor
from kit.governance.server import ErrorMapper, GovernedServerInterceptor
from kit.governance.shedding import CpuSampler, LoadSheddingInterceptor, SheddingConfig
from kit.governance.tracing import ClientTracingInterceptor, ServerTracingInterceptor

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "EXEMPT_PREFIXES",
    "AdaptiveThrottle",
    "BreakerConfig",
    "BreakerOpenError",
    "CircuitBreakerInterceptor",
    "ClientDeadlineInterceptor",
    "ClientMetricsInterceptor",
    "ClientTracingInterceptor",
    "CpuSampler",
    "DeadlineConfig",
    "DeadlineExceededError",
    "ErrorMapper",
    "Fallback",
    "GovernanceConfig",
    "GovernanceMetrics",
    "GovernedServerInterceptor",
    "LoadSheddingInterceptor",
    "RateLimit",
    "RateLimitConfig",
    "RateLimitInterceptor",
    "ServerDeadlineInterceptor",
    "ServerMetricsInterceptor",
    "ServerTracingInterceptor",
    "SheddingConfig",
    "SlidingWindow",
    "UnaryClientPolicy",
    "aclose_interceptors",
    "client_chain",
    "client_interceptors",
    "current_deadline",
    "deadline_after",
    "default_metrics",
    "remaining_time",
    "reset_deadline",
    "server_interceptors",
    "set_deadline",
]
