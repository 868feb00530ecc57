"""Prometheus metrics of gRPC calls and of the governance interceptors.

Exported names (DESIGN.md §6):

- ``webook_grpc_server_handled_total{service,method,code}`` and
  ``webook_grpc_server_handling_seconds{service,method}``: every RPC a server finished;
- ``webook_grpc_server_in_flight``: RPCs a server is executing now;
- ``webook_grpc_server_rejected_total{service,method,reason}``: RPCs refused by the rate
  limiter (``reason="ratelimit"``) or the load shedder (``reason="shed"``);
- ``webook_grpc_client_handled_total{service,method,code}`` and
  ``webook_grpc_client_handling_seconds{service,method}``: every outgoing call, as its caller
  saw it (a breaker fallback counts as OK, a local breaker rejection as UNAVAILABLE);
- ``webook_breaker_state{target}`` (1 while the breaker rejects some calls, else 0),
  ``webook_breaker_rejection_probability{target}`` and ``webook_breaker_rejected_total{target}``.

``service`` is the proto service's full name, ``method`` the bare method name, ``code`` the
status code's name (``OK``, ``NOT_FOUND``, ...). Metrics live in a ``GovernanceMetrics`` object
registered once per registry; ``default_metrics()`` is the process-wide one on the default
Prometheus registry, created on first use.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kit.governance._rpc import (
    HandlerContinuation,
    MethodHandler,
    RpcMethod,
    ServerInterceptorBase,
    ServicerContext,
    UnaryStreamCall,
    UnaryStreamContinuation,
    UnaryUnaryCall,
    UnaryUnaryClientInterceptorBase,
    UnaryUnaryContinuation,
    call_status,
    observe_stream,
    parse_method,
    server_status,
    wrap_handler,
)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets (seconds): a loopback hop costs about a millisecond here."""


class GovernanceMetrics:
    """The metric families the governance interceptors update, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        """Create and register the metrics (``registry=None`` registers nowhere, for tests)."""
        self.server_handled = Counter(
            "webook_grpc_server_handled_total",
            "RPCs completed by the server, by final status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.server_handling_seconds = Histogram(
            "webook_grpc_server_handling_seconds",
            "Time the server spent on an RPC, from handler start to final status.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.server_in_flight = Gauge(
            "webook_grpc_server_in_flight",
            "RPCs the server is executing now.",
            registry=registry,
        )
        self.server_rejected = Counter(
            "webook_grpc_server_rejected_total",
            "RPCs the server refused with RESOURCE_EXHAUSTED before running them.",
            ["service", "method", "reason"],
            registry=registry,
        )
        self.client_handled = Counter(
            "webook_grpc_client_handled_total",
            "Outgoing RPCs completed, by final status code as the caller saw it.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.client_handling_seconds = Histogram(
            "webook_grpc_client_handling_seconds",
            "Time an outgoing RPC took, as the caller saw it.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "webook_breaker_state",
            "1 while the client-side breaker rejects some calls to the target, else 0.",
            ["target"],
            registry=registry,
        )
        self.breaker_rejection_probability = Gauge(
            "webook_breaker_rejection_probability",
            "Probability with which the breaker currently rejects a call to the target.",
            ["target"],
            registry=registry,
        )
        self.breaker_rejected = Counter(
            "webook_breaker_rejected_total",
            "Calls the client-side breaker rejected locally.",
            ["target"],
            registry=registry,
        )

        # Resolved label children, keyed by (side, method, code): ``labels()`` takes a lock
        # and validates its arguments on every call, which the hot path need not repeat.
        self._children: dict[tuple[str, RpcMethod, grpc.StatusCode], tuple[Any, Any]] = {}

    def _pair(self, side: str, method: RpcMethod, code: grpc.StatusCode) -> tuple[Any, Any]:
        key = (side, method, code)
        pair = self._children.get(key)
        if pair is None:
            counter, histogram = (
                (self.server_handled, self.server_handling_seconds)
                if side == "server"
                else (self.client_handled, self.client_handling_seconds)
            )
            pair = (
                counter.labels(method.service, method.name, code.name),
                histogram.labels(method.service, method.name),
            )
            self._children[key] = pair
        return pair

    def observe_server(self, method: RpcMethod, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished server RPC."""
        handled, timing = self._pair("server", method, code)
        handled.inc()
        timing.observe(seconds)

    def observe_client(self, method: RpcMethod, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished outgoing RPC."""
        handled, timing = self._pair("client", method, code)
        handled.inc()
        timing.observe(seconds)

    def count_rejected(self, method: RpcMethod, reason: str) -> None:
        """Count one RPC refused by the server (``reason``: ``ratelimit`` or ``shed``)."""
        self.server_rejected.labels(method.service, method.name, reason).inc()


@functools.cache
def default_metrics() -> GovernanceMetrics:
    """The process-wide metrics on the default Prometheus registry (created on first use)."""
    return GovernanceMetrics(REGISTRY)


class ServerMetricsInterceptor(ServerInterceptorBase):
    """Counts and times every RPC the server handles, with its final status code."""

    def __init__(self, metrics: GovernanceMetrics | None = None) -> None:
        """Record into ``metrics`` (``default_metrics()`` if None)."""
        self._metrics = metrics or default_metrics()

    async def intercept_service(  # type: ignore[override]  # grpc-stubs: continuation is async
        self, continuation: HandlerContinuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """Wrap the handler to observe its duration and final status."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = parse_method(handler_call_details.method)
        return wrap_handler(handler, functools.partial(self._observe, method))

    @asynccontextmanager
    async def _observe(self, method: RpcMethod, context: ServicerContext) -> AsyncIterator[None]:
        in_flight = self._metrics.server_in_flight
        in_flight.inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            in_flight.dec()
            code = server_status(context, error)
            self._metrics.observe_server(method, code, time.perf_counter() - started)


class ClientMetricsInterceptor(UnaryUnaryClientInterceptorBase):
    """Counts and times every outgoing call with the status code its caller sees.

    Covers unary-unary and unary-stream calls: pass it through ``client_chain`` so that a
    channel applies it to both.
    """

    def __init__(self, metrics: GovernanceMetrics | None = None) -> None:
        """Record into ``metrics`` (``default_metrics()`` if None)."""
        self._metrics = metrics or default_metrics()

    async def intercept_unary_unary(
        self,
        continuation: UnaryUnaryContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryUnaryCall:
        """Run the call, then record its status and duration."""
        method = parse_method(client_call_details.method)
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            call = await continuation(client_call_details, request)
            code = await call_status(call)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._metrics.observe_client(method, code, time.perf_counter() - started)
        return call

    async def intercept_unary_stream(
        self,
        continuation: UnaryStreamContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryStreamCall | AsyncIterator[Any]:
        """Start the call; record its status and duration when the stream ends."""
        method = parse_method(client_call_details.method)
        started = time.perf_counter()
        try:
            call = await continuation(client_call_details, request)
        except grpc.aio.AioRpcError as exc:
            self._metrics.observe_client(method, exc.code(), time.perf_counter() - started)
            raise

        def done(code: grpc.StatusCode, _error: BaseException | None) -> None:
            self._metrics.observe_client(method, code, time.perf_counter() - started)

        return observe_stream(call, done)
