"""OpenTelemetry tracing of gRPC calls, with W3C trace context carried in gRPC metadata.

``ClientTracingInterceptor`` opens a CLIENT span per outgoing call and injects its context into
the call's metadata (``traceparent``/``tracestate`` with the default propagators);
``ServerTracingInterceptor`` extracts that context from the invocation metadata and runs the
handler inside a SERVER span, its child. Both set ``rpc.system=grpc``, ``rpc.service``,
``rpc.method`` and ``rpc.grpc.status_code``, and mark the span ERROR on any non-OK status.
Spans are named ``<proto service>/<method>``. Health-check and reflection calls are not traced.

Propagation uses the globally configured text-map propagator (``opentelemetry.propagate``);
the tracer provider can be passed explicitly, otherwise the global one is used.
While nothing records spans, the client builds its span and ``traceparent`` directly
(:class:`kit.observability.tracing.UnrecordedSpans`), as the SDK and the W3C propagator
would.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

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
    is_exempt,
    observe_stream,
    parse_method,
    replace_call_details,
    server_status,
    wrap_handler,
)
from kit.observability.tracing import UnrecordedSpans, format_traceparent


def _attributes(method: RpcMethod) -> dict[str, str]:
    return {"rpc.system": "grpc", "rpc.service": method.service, "rpc.method": method.name}


def _finish(span: Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ServerTracingInterceptor(ServerInterceptorBase):
    """Runs each handler in a SERVER span continuing the caller's trace."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        """Create spans with ``tracer_provider`` (the global provider if None)."""
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def intercept_service(  # type: ignore[override]  # grpc-stubs: continuation is async
        self, continuation: HandlerContinuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """Wrap the handler in a span (health and reflection methods excepted)."""
        handler = await continuation(handler_call_details)
        if handler is None or is_exempt(handler_call_details.method):
            return handler
        method = parse_method(handler_call_details.method)
        return wrap_handler(handler, functools.partial(self._span, method))

    @asynccontextmanager
    async def _span(self, method: RpcMethod, context: ServicerContext) -> AsyncIterator[None]:
        carrier: dict[str, list[str]] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                carrier.setdefault(key, []).append(value)
        parent = propagate.extract(carrier)
        with self._tracer.start_as_current_span(
            f"{method.service}/{method.name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_attributes(method),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except BaseException as exc:
                if not isinstance(
                    exc, grpc.aio.AbortError | asyncio.CancelledError | GeneratorExit
                ):
                    span.record_exception(exc)
                _finish(span, server_status(context, exc))
                raise
            _finish(span, server_status(context, None))


def _client_error_code(span: Span, error: BaseException) -> grpc.StatusCode:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code()
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    span.record_exception(error)
    return grpc.StatusCode.UNKNOWN


class ClientTracingInterceptor(UnaryUnaryClientInterceptorBase):
    """Wraps each outgoing call in a CLIENT span and propagates its context in metadata.

    Covers unary-unary and unary-stream calls: pass it through ``client_chain`` so that a
    channel applies it to both.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        """Create spans with ``tracer_provider`` (the global provider if None)."""
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._unrecorded = UnrecordedSpans(tracer_provider)

    def start(
        self, method: RpcMethod, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> tuple[Span, grpc.aio.Metadata]:
        """Open the CLIENT span of a call to ``method``; ``metadata`` plus its context."""
        provider = self._unrecorded.provider()
        if provider is not None:
            # Nothing records: the SDK's span and the propagator's headers, built directly
            # (kit.observability.tracing.UnrecordedSpans).
            span: Span = UnrecordedSpans.child(
                provider, trace.get_current_span().get_span_context()
            )
            context = span.get_span_context()
            with_context = grpc.aio.Metadata(*(metadata or ()))
            with_context["traceparent"] = format_traceparent(context)
            if context.trace_state:
                with_context["tracestate"] = context.trace_state.to_header()
            return span, with_context
        span = self._tracer.start_span(
            f"{method.service}/{method.name}",
            kind=SpanKind.CLIENT,
            attributes=_attributes(method),
            record_exception=False,
            set_status_on_exception=False,
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        with_context = grpc.aio.Metadata(*(metadata or ()))
        for key, value in carrier.items():
            with_context[key] = value
        return span, with_context

    @staticmethod
    def finish(span: Span, code: grpc.StatusCode) -> None:
        """Record the call's final status on its span (ERROR unless OK); does not end it."""
        if span.is_recording():
            _finish(span, code)

    @staticmethod
    def error_code(span: Span, error: BaseException) -> grpc.StatusCode:
        """The status a call that raised ``error`` ended with (unexpected errors recorded)."""
        return _client_error_code(span, error)

    def _start(
        self, details: grpc.aio.ClientCallDetails
    ) -> tuple[Span, grpc.aio.ClientCallDetails]:
        span, metadata = self.start(parse_method(details.method), details.metadata)
        return span, replace_call_details(details, metadata=metadata)

    async def intercept_unary_unary(
        self,
        continuation: UnaryUnaryContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryUnaryCall:
        """Run the call inside a CLIENT span that ends with the call."""
        span, details = self._start(client_call_details)
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                call = await continuation(details, request)
                code = await call_status(call)
            except BaseException as exc:
                _finish(span, _client_error_code(span, exc))
                raise
            _finish(span, code)
            return call

    async def intercept_unary_stream(
        self,
        continuation: UnaryStreamContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryStreamCall | AsyncIterator[Any]:
        """Start the call in a CLIENT span that ends when the response stream does."""
        span, details = self._start(client_call_details)
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                call = await continuation(details, request)
        except BaseException as exc:
            _finish(span, _client_error_code(span, exc))
            span.end()
            raise

        def done(code: grpc.StatusCode, _error: BaseException | None) -> None:
            _finish(span, code)
            span.end()

        return observe_stream(call, done)
