"""OpenTelemetry spans of gRPC calls, with the W3C trace context carried in gRPC metadata.

:class:`Tracing` is the one implementation for both sides. A client call gets a CLIENT span
whose context is injected into the call's metadata (``traceparent``/``tracestate`` with the
default propagators); a server call gets a SERVER span continuing the context extracted from
the invocation metadata, current while the handler runs. Both carry ``rpc.system=grpc``,
``rpc.service``, ``rpc.method`` and ``rpc.grpc.status_code``, are named ``<proto
service>/<method>`` and are marked ERROR on any non-OK status.

Propagation uses the globally configured text-map propagator (``opentelemetry.propagate``);
the tracer provider can be passed explicitly, otherwise the global one is used. While nothing
records spans, both sides skip the SDK and the propagator
(:class:`kit.observability.tracing.UnrecordedSpans`): the span the SDK would make is built
directly, the server parses a canonical ``traceparent`` itself and the client formats it; a
``tracestate`` or a ``traceparent`` in another form still goes through the propagator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextvars import Token
from typing import Final

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from kit.governance._rpc import RpcMethod, ServicerContext
from kit.observability.tracing import (
    ExportAwareTracerProvider,
    UnrecordedSpans,
    format_traceparent,
    is_canonical_traceparent,
    parse_traceparent,
)

_EMPTY_CONTEXT: Final = Context()
_NOT_RECORDED: Final = (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit)
"""Exceptions that end a server span without being recorded on it: they are the status."""


def _set_status(span: Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))


class Tracing:
    """CLIENT and SERVER spans of gRPC calls; one per composer (server runner, client policy)."""

    __slots__ = ("_fields", "_textmap", "_tracer", "unrecorded")

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        """Create spans with ``tracer_provider`` (the global provider if None)."""
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.unrecorded = UnrecordedSpans(tracer_provider)
        self._textmap: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()

    # --- server side ---------------------------------------------------------------------

    def start_server(
        self, method: RpcMethod, context: ServicerContext
    ) -> tuple[Span, Token[Context]]:
        """Open the SERVER span of a call and make it current; end with :meth:`end_server`."""
        provider = self.unrecorded.provider()
        if provider is not None:
            started = self._start_unrecorded_server(provider, context)
            if started is not None:
                return started
        textmap = propagate.get_global_textmap()
        fields = self._propagated_fields(textmap)
        carrier: dict[str, list[str]] = {}
        for key, value in context.invocation_metadata() or ():
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
            span = self._tracer.start_span(
                method.span_name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=method.attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def _start_unrecorded_server(
        provider: ExportAwareTracerProvider, context: ServicerContext
    ) -> tuple[Span, Token[Context]] | None:
        """The SERVER span when nothing records and the caller's context is plain (or absent).

        None when the metadata carries a ``tracestate`` or a ``traceparent`` not in the
        canonical version-00 form: the propagator reads those.
        """
        traceparent: str | None = None
        for key, value in context.invocation_metadata() or ():
            if key == "traceparent":
                if traceparent is None:
                    if not isinstance(value, str) or not is_canonical_traceparent(value):
                        return None
                    traceparent = value  # the propagator reads the first one too
            elif key == "tracestate":
                return None
        parsed = None if traceparent is None else parse_traceparent(traceparent)
        if parsed is None:
            span = UnrecordedSpans.span(provider, None)
        else:
            span = UnrecordedSpans.span(provider, parsed[0], parsed[2])
        # The propagator's parent context holds nothing but the parent span, which the
        # span replaces: the handler's context is the span alone.
        return span, otel_context.attach(trace.set_span_in_context(span, _EMPTY_CONTEXT))

    def _propagated_fields(self, textmap: TextMapPropagator) -> frozenset[str]:
        """The metadata keys ``textmap`` reads, computed once per global propagator."""
        if textmap is not self._textmap:
            self._fields = frozenset(field.lower() for field in textmap.fields)
            self._textmap = textmap
        return self._fields

    @staticmethod
    def end_server(
        span: Span, token: Token[Context], code: grpc.StatusCode, error: BaseException | None
    ) -> None:
        """End a SERVER span with the call's status; an unexpected ``error`` is recorded."""
        if span.is_recording():
            if error is not None and not isinstance(error, _NOT_RECORDED):
                span.record_exception(error)
            _set_status(span, code)
        span.end()
        otel_context.detach(token)

    # --- client side ---------------------------------------------------------------------

    def start_client(
        self, method: RpcMethod, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> tuple[Span, grpc.aio.Metadata]:
        """Open the CLIENT span of a call to ``method``; ``metadata`` plus its context."""
        provider = self.unrecorded.provider()
        if provider is not None:
            # Nothing records: the SDK's span and the propagator's headers, built directly.
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
            method.span_name,
            kind=SpanKind.CLIENT,
            attributes=method.attributes,
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
    def client_error_code(span: Span, error: BaseException) -> grpc.StatusCode:
        """The status a call that raised ``error`` ended with (unexpected errors recorded)."""
        if isinstance(error, grpc.aio.AioRpcError):
            return error.code()
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            return grpc.StatusCode.CANCELLED
        span.record_exception(error)
        return grpc.StatusCode.UNKNOWN

    @staticmethod
    def end_client(span: Span, code: grpc.StatusCode) -> None:
        """End a CLIENT span with the call's final status (ERROR unless OK)."""
        if span.is_recording():
            _set_status(span, code)
        span.end()
