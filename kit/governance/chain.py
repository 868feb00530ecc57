"""The default interceptor chains and their configuration.

Server chain, outermost first::

    tracing → metrics → shedding → rate limit → deadline   (→ error mapping, added by kit.grpcx)

Tracing and metrics are outermost so that they see every call, including the ones shed or
rate limited; shedding comes before the rate limiter so that an overloaded server does not
spend tokens on calls it refuses anyway.

Client chain, outermost first::

    tracing → metrics → deadline → breaker

Metrics record what the caller sees (a fallback answer counts as OK); the deadline check fails
fast before the breaker, so a spent budget is not held against the dependency.

The interceptors keep state (token buckets, breakers, the CPU sampler): build each chain once
per server, and once per target service for clients, and share the client chain among all
channels to that service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import grpc.aio
from opentelemetry.trace import TracerProvider

from kit.governance._rpc import StreamingClientInterceptor, UnaryStreamAdapter
from kit.governance.breaker import BreakerConfig, CircuitBreakerInterceptor, Fallback
from kit.governance.deadline import (
    ClientDeadlineInterceptor,
    DeadlineConfig,
    ServerDeadlineInterceptor,
)
from kit.governance.metrics import (
    ClientMetricsInterceptor,
    GovernanceMetrics,
    ServerMetricsInterceptor,
)
from kit.governance.ratelimit import RateLimitConfig, RateLimitInterceptor
from kit.governance.shedding import LoadSheddingInterceptor, SheddingConfig
from kit.governance.tracing import ClientTracingInterceptor, ServerTracingInterceptor


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    """Everything the default chains need; every field has a production default.

    - ``deadline``: outgoing timeouts (5 s default, per-method overrides);
    - ``breaker``: SRE adaptive throttling (K=1.5, 10 s window, 20 requests minimum, per service);
    - ``rate_limit``: per-method token buckets (none by default);
    - ``shedding``: at most 512 calls in flight, or 64 while CPU ≥ 0.9 core;
    - ``tracing`` / ``metrics``: whether to include those interceptors.
    """

    deadline: DeadlineConfig = field(default_factory=DeadlineConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    shedding: SheddingConfig = field(default_factory=SheddingConfig)
    tracing: bool = True
    metrics: bool = True


def server_interceptors(
    config: GovernanceConfig | None = None,
    *,
    metrics: GovernanceMetrics | None = None,
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """The server chain: tracing → metrics → shedding → rate limit → deadline.

    Interceptors that are disabled or have nothing to do (no rate limits configured) are left
    out. Call ``aclose_interceptors`` on the result after the server stopped.
    """
    config = config or GovernanceConfig()
    chain: list[grpc.aio.ServerInterceptor[Any, Any]] = []
    if config.tracing:
        chain.append(ServerTracingInterceptor(tracer_provider))
    if config.metrics:
        chain.append(ServerMetricsInterceptor(metrics))
    if config.shedding.enabled:
        chain.append(LoadSheddingInterceptor(config.shedding, metrics=metrics))
    if config.rate_limit.limits_anything:
        chain.append(RateLimitInterceptor(config.rate_limit, metrics=metrics))
    chain.append(ServerDeadlineInterceptor())
    return chain


def client_interceptors(
    target_service: str,
    config: GovernanceConfig | None = None,
    *,
    fallbacks: Mapping[str, Fallback] | None = None,
    metrics: GovernanceMetrics | None = None,
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """The client chain for calls to ``target_service``: tracing → metrics → deadline → breaker.

    ``target_service`` names the dependency (e.g. ``"user"``); it keys the breaker and labels
    its metrics. ``fallbacks`` maps full method names to degrade hooks used when the breaker
    rejects. Pass the result as ``interceptors=`` to ``grpc.aio.insecure_channel``; it holds
    each interceptor once plus its unary-stream adapter (see ``client_chain``).
    """
    config = config or GovernanceConfig()
    chain: list[object] = []
    if config.tracing:
        chain.append(ClientTracingInterceptor(tracer_provider))
    if config.metrics:
        chain.append(ClientMetricsInterceptor(metrics))
    chain.append(ClientDeadlineInterceptor(config.deadline))
    if config.breaker.enabled:
        chain.append(
            CircuitBreakerInterceptor(
                target_service, config.breaker, fallbacks=fallbacks, metrics=metrics
            )
        )
    return client_chain(*chain)


def client_chain(*interceptors: object) -> list[grpc.aio.ClientInterceptor]:
    """The ``interceptors=`` list for a ``grpc.aio`` channel, outermost first.

    A channel registers each interceptor object for one RPC kind only (grpc/grpc#43512); this
    adds an adapter for every interceptor that also handles unary-stream calls, so that it
    applies to both kinds, in the same order.
    """
    expanded: list[object] = list(interceptors)
    expanded += [
        UnaryStreamAdapter(interceptor)
        for interceptor in interceptors
        if isinstance(interceptor, StreamingClientInterceptor)
    ]
    # grpc-stubs model ClientInterceptor as an opaque placeholder that must be cast to.
    return [cast(grpc.aio.ClientInterceptor, interceptor) for interceptor in expanded]


@runtime_checkable
class _Closeable(Protocol):
    async def aclose(self) -> None: ...


async def aclose_interceptors(interceptors: Iterable[object]) -> None:
    """Stop the background work of the interceptors that have any (the CPU sampler)."""
    for interceptor in interceptors:
        if isinstance(interceptor, _Closeable):
            await interceptor.aclose()
