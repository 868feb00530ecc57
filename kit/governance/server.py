"""The server chain fused into one ``grpc.aio`` interceptor: one scope per call.

:func:`~kit.governance.chain.server_interceptors` builds the server governance as five
interceptors (tracing → metrics → shedding → rate limit → deadline, then error mapping from
``kit.grpcx``). ``grpc.aio`` runs every interceptor's ``intercept_service`` coroutine on every
call, and each one rebuilds the method handler around an ``asynccontextmanager`` scope: per
call that is five coroutines, five new handlers and five generator-based scopes before the
servicer runs, a large share of a cheap call's CPU (docs/performance.md).

:class:`GovernedServerInterceptor` does the same work in the same order with:

- one wrapped handler per method, built on the first call and reused while the server
  hands out the same handler object (it always does for registered services);
- one plain ``__aenter__``/``__aexit__`` scope per call;
- per-method state computed once: the parsed name, the span name and attributes, whether
  the method is exempt, and the metric label children by status code.
- while nothing records spans, the SERVER span built without the SDK and the caller's
  ``traceparent`` parsed without the propagator (:class:`kit.observability.tracing.
  UnrecordedSpans`); a ``tracestate`` or an unusual ``traceparent`` takes the propagator.

Behaviour is the chain's, documented in docs/governance.md: health-check and reflection
methods are counted in metrics and get the deadline but are never traced, shed or rate
limited; the tracing and metrics see the final status whether the handler returns, aborts,
raises (UNKNOWN, or what the error mapper makes of it) or is cancelled; shedding refuses
before the rate limiter spends a token; the rate limiter answers RESOURCE_EXHAUSTED with a
``RetryInfo``; the incoming deadline is the current deadline while the handler runs. The
optional ``error_mapper`` (``kit.grpcx.errors.map_handler_error``) is the innermost step: it
turns an exception of the handler into an abort with a status.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import Any, Final, TypeAlias

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from kit.governance._rpc import (
    HandlerContinuation,
    MethodHandler,
    RpcMethod,
    ServerInterceptorBase,
    ServicerContext,
    is_exempt,
    parse_method,
    server_status,
    wrap_handler,
)
from kit.governance.chain import GovernanceConfig
from kit.governance.context import reset_deadline, set_deadline
from kit.governance.metrics import GovernanceMetrics, default_metrics
from kit.governance.ratelimit import RateLimitInterceptor, abort_rate_limited
from kit.governance.shedding import CpuReader, LoadSheddingInterceptor
from kit.observability.tracing import (
    ExportAwareTracerProvider,
    UnrecordedSpans,
    is_canonical_traceparent,
    parse_traceparent,
)

ErrorMapper: TypeAlias = Callable[[Exception, ServicerContext, str], Awaitable[None]]
"""Turns a handler's exception into ``context.abort(...)`` (must raise); see kit.grpcx.errors."""

_NOT_MAPPED: Final = (grpc.aio.AbortError,)
_EMPTY_CONTEXT: Final = Context()


class _Method:
    """What the scope needs about one method, computed once per method."""

    __slots__ = (
        "attributes",
        "children",
        "exempt",
        "full",
        "rpc",
        "span_name",
    )

    def __init__(self, full: str) -> None:
        self.full = full
        self.rpc: RpcMethod = parse_method(full)
        self.exempt = is_exempt(full)
        self.span_name = f"{self.rpc.service}/{self.rpc.name}"
        self.attributes = {
            "rpc.system": "grpc",
            "rpc.service": self.rpc.service,
            "rpc.method": self.rpc.name,
        }
        # Status code -> (handled counter child, handling histogram child).
        self.children: dict[grpc.StatusCode, tuple[Any, Any]] = {}


class _CallScope:
    """Everything the chain did around one execution of a handler, in the chain's order."""

    __slots__ = (
        "_context",
        "_deadline",
        "_governor",
        "_method",
        "_shed",
        "_span",
        "_started",
        "_token",
    )
    _span: Span | None
    _started: float
    _token: Token[Context]

    def __init__(
        self, governor: GovernedServerInterceptor, method: _Method, context: ServicerContext
    ) -> None:
        self._governor = governor
        self._method = method
        self._context = context
        self._span = None
        self._shed = False
        self._deadline: Any = None

    async def __aenter__(self) -> None:
        governor, method, context = self._governor, self._method, self._context
        metrics = governor.metrics
        if metrics is not None:
            metrics.server_in_flight.inc()
        self._started = time.perf_counter()
        exempt = method.exempt
        if governor.tracer is not None and not exempt:
            self._start_span()
        try:
            shedder = governor.shedder
            if shedder is not None and not exempt:
                shedder.start()
                if not shedder.enter():
                    governor.count_rejected(method.rpc, "shed")
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"server overloaded, {method.full} shed",
                    )
                self._shed = True
            limiter = governor.limiter
            if limiter is not None and not exempt:
                bucket = limiter.bucket_for(method.full)
                if bucket is not None and not bucket.try_acquire():
                    governor.count_rejected(method.rpc, "ratelimit")
                    await abort_rate_limited(context, method.rpc, bucket.seconds_until_available())
            # The stubs say float; grpc.aio returns None when the client set no deadline.
            remaining: float | None = context.time_remaining()
            if remaining is not None:
                self._deadline = set_deadline(time.monotonic() + remaining)
        except BaseException as exc:
            # A refusal: the handler never runs, but metrics and the span see the status.
            self._release()
            self._finish(exc)
            raise

    def _start_span(self) -> None:
        governor = self._governor
        provider = governor.unrecorded.provider()
        if provider is not None and self._start_unrecorded_span(provider):
            return
        textmap = propagate.get_global_textmap()
        fields = governor.propagated_fields(textmap)
        carrier: dict[str, list[str]] = {}
        for key, value in self._context.invocation_metadata() or ():
            # Only the keys the propagator reads (traceparent, tracestate): a call carries
            # other metadata too, which extract would copy for nothing.
            if key in fields and isinstance(value, str):
                carrier.setdefault(key, []).append(value)
        parent = textmap.extract(carrier)
        if provider is not None:
            # Nothing records: the SDK's span without the SDK (kit.observability.tracing).
            span: Span = UnrecordedSpans.child(
                provider, trace.get_current_span(parent).get_span_context()
            )
        else:
            method = self._method
            tracer = governor.tracer
            assert tracer is not None
            span = tracer.start_span(
                method.span_name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=method.attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span, parent))

    def _start_unrecorded_span(self, provider: ExportAwareTracerProvider) -> bool:
        """The SERVER span when nothing records and the caller's context is plain (or absent).

        False (nothing done) when the metadata carries a ``tracestate`` or a ``traceparent``
        not in the canonical version-00 form: the propagator reads those.
        """
        traceparent: str | None = None
        for key, value in self._context.invocation_metadata() or ():
            if key == "traceparent":
                if traceparent is None:
                    if not isinstance(value, str) or not is_canonical_traceparent(value):
                        return False
                    traceparent = value  # the propagator reads the first one too
            elif key == "tracestate":
                return False
        parsed = None if traceparent is None else parse_traceparent(traceparent)
        if parsed is None:
            span = UnrecordedSpans.span(provider, None)
        else:
            span = UnrecordedSpans.span(provider, parsed[0], parsed[2])
        self._span = span
        # The propagator's parent context holds nothing but the parent span, which the
        # span replaces: the handler's context is the span alone.
        self._token = otel_context.attach(trace.set_span_in_context(span, _EMPTY_CONTEXT))
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = exc
        try:
            mapper = self._governor.error_mapper
            if (
                mapper is not None
                and isinstance(exc, Exception)
                and not isinstance(exc, _NOT_MAPPED)
            ):
                try:
                    await mapper(exc, self._context, self._method.full)
                except BaseException as mapped:
                    error = mapped
                    raise
        finally:
            self._release()
            self._finish(error)

    def _release(self) -> None:
        if self._deadline is not None:
            reset_deadline(self._deadline)
            self._deadline = None
        if self._shed:
            self._shed = False
            shedder = self._governor.shedder
            assert shedder is not None
            shedder.leave()

    def _finish(self, error: BaseException | None) -> None:
        governor, method = self._governor, self._method
        code = server_status(self._context, error)
        metrics = governor.metrics
        if metrics is not None:
            metrics.server_in_flight.dec()
            children = method.children.get(code)
            if children is None:
                children = (
                    metrics.server_handled.labels(method.rpc.service, method.rpc.name, code.name),
                    metrics.server_handling_seconds.labels(method.rpc.service, method.rpc.name),
                )
                method.children[code] = children
            handled, timing = children
            handled.inc()
            timing.observe(time.perf_counter() - self._started)
        span = self._span
        if span is not None:
            self._span = None
            if span.is_recording():
                if error is not None and not isinstance(
                    error, grpc.aio.AbortError | asyncio.CancelledError | GeneratorExit
                ):
                    span.record_exception(error)
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code is not grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()
            otel_context.detach(self._token)


class GovernedServerInterceptor(ServerInterceptorBase):
    """Tracing, metrics, load shedding, rate limits, deadline and error mapping in one scope.

    Args:
        config: which parts are on and their limits (``GovernanceConfig()`` if None).
        metrics: where to record (``default_metrics()`` if None).
        tracer_provider: for the SERVER spans (the global provider if None).
        error_mapper: the innermost step, turning a handler's exception into a status; None
            leaves exceptions as they are (UNKNOWN on the wire) for a later interceptor.
        cpu_reader: replaces the shedder's psutil reading (tests).

    Call :meth:`aclose` (or ``aclose_interceptors``) after the server stopped: it stops the
    shedder's CPU sampler.
    """

    def __init__(
        self,
        config: GovernanceConfig | None = None,
        *,
        metrics: GovernanceMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
        error_mapper: ErrorMapper | None = None,
        cpu_reader: CpuReader | None = None,
    ) -> None:
        config = config or GovernanceConfig()
        resolved = metrics or default_metrics()
        self.tracer = (
            trace.get_tracer(__name__, tracer_provider=tracer_provider) if config.tracing else None
        )
        self.metrics = resolved if config.metrics else None
        self._rejections = resolved
        self.shedder = (
            LoadSheddingInterceptor(config.shedding, metrics=resolved, cpu_reader=cpu_reader)
            if config.shedding.enabled
            else None
        )
        self.limiter = (
            RateLimitInterceptor(config.rate_limit, metrics=resolved)
            if config.rate_limit.limits_anything
            else None
        )
        self.error_mapper = error_mapper
        self.unrecorded = UnrecordedSpans(tracer_provider)
        self._textmap: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()
        # Full method -> (the handler the server gave, the handler wrapped around it).
        self._handlers: dict[str, tuple[MethodHandler, MethodHandler]] = {}

    def propagated_fields(self, textmap: TextMapPropagator) -> frozenset[str]:
        """The metadata keys ``textmap`` reads, computed once per global propagator."""
        if textmap is not self._textmap:
            self._fields = frozenset(field.lower() for field in textmap.fields)
            self._textmap = textmap
        return self._fields

    def count_rejected(self, method: RpcMethod, reason: str) -> None:
        """Count a call refused by the shedder or the rate limiter."""
        self._rejections.count_rejected(method, reason)

    async def aclose(self) -> None:
        """Stop the shedder's CPU sampler."""
        if self.shedder is not None:
            await self.shedder.aclose()

    async def intercept_service(  # type: ignore[override]  # grpc-stubs: continuation is async
        self, continuation: HandlerContinuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """The method's handler, wrapped once and reused for every later call."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method
        cached = self._handlers.get(full)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, _Method(full))
        self._handlers[full] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: MethodHandler, method: _Method) -> MethodHandler:
        """The same handler, every execution run inside a :class:`_CallScope`.

        Unary responses get a wrapper of their own (the hot path: no scope factory call);
        streaming ones :func:`kit.governance._rpc.wrap_handler`'s. Both keep the behaviour's
        calling convention, which grpc.aio inspects.
        """
        deserializer = handler.request_deserializer
        serializer = handler.response_serializer
        if not handler.response_streaming:
            behaviour: Callable[..., Any] | None = (
                handler.stream_unary if handler.request_streaming else handler.unary_unary
            )
            assert behaviour is not None
            unary = behaviour
            is_async = inspect.iscoroutinefunction(unary)

            async def unary_response(request: Any, context: ServicerContext) -> Any:
                async with _CallScope(self, method, context):
                    result = unary(request, context)
                    return await result if is_async or inspect.isawaitable(result) else result

            factory = (
                grpc.stream_unary_rpc_method_handler
                if handler.request_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            return factory(unary_response, deserializer, serializer)

        # Streaming calls are rare here: the shared wrapper, with this call's scope.
        return wrap_handler(handler, lambda context: _CallScope(self, method, context))
