"""The request's trace context when spans are not recorded: ids for logs and gRPC calls.

FastAPI's built-in telemetry opens the gateway's SERVER span per request. When the process
records no spans (no OTLP endpoint, no test exporter: :mod:`kit.observability.tracing`),
that span is non-recording anyway, yet FastAPI still builds its attributes, wraps
``send``/``receive`` and walks the middleware stack on every request (about a tenth of the
gateway's CPU on ``GET /articles/pub/:id``). In that case the app excludes the request from
FastAPI's telemetry (:func:`telemetry_excluded`) and :class:`TraceContexts` (run first by
the gateway's one layer, :class:`~gateway.middleware.gateway_layer.GatewayLayer`) does the
part that still matters: it continues the caller's W3C trace
context (or starts a trace) in a non-recording span made current for the request, so log
lines carry the trace id and outgoing gRPC calls propagate it. When spans are recorded it
steps aside and FastAPI traces the request in full. While nothing records and the caller
sends at most a canonical ``traceparent`` (no ``tracestate``), the span is the one the SDK
would start, built directly (:class:`kit.observability.tracing.UnrecordedSpans`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanKind
from starlette.datastructures import Headers
from starlette.types import Scope

from kit.observability.tracing import (
    ExportAwareTracerProvider,
    UnrecordedSpans,
    is_canonical_traceparent,
    parse_traceparent,
    records_spans,
)

_EMPTY_CONTEXT: Final = otel_context.Context()


def telemetry_excluded(scope: MutableMapping[str, Any]) -> bool:
    """FastAPI's ``telemetry["exclude"]``: skip its tracing while no span is recorded."""
    return not records_spans()


def _plain_unrecorded_span(
    provider: ExportAwareTracerProvider, scope: Scope
) -> NonRecordingSpan | None:
    """The request's span built without the SDK, when the caller's context is plain.

    None (use the propagator and the SDK) when the request carries a ``tracestate`` or a
    ``traceparent`` not in the canonical version-00 form.
    """
    traceparent: str | None = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            if traceparent is None:
                traceparent = value.decode("latin-1")  # the propagator reads the first one
                if not is_canonical_traceparent(traceparent):
                    return None
        elif name == b"tracestate":
            return None
    parsed = None if traceparent is None else parse_traceparent(traceparent)
    if parsed is None:
        return UnrecordedSpans.span(provider, None)
    return UnrecordedSpans.span(provider, parsed[0], parsed[2])


_Entered = tuple[Token[otel_context.Context], trace.Span | None]


class TraceContexts:
    """The request's trace context while no span is recorded, as a plain object.

    :meth:`enter` makes the context current (None when spans are recorded: FastAPI's
    telemetry then traces the request); :meth:`leave` restores the previous one.

    Args:
        tracer_provider: the provider to use (default: the global one).
    """

    __slots__ = ("_provider", "_unrecorded", "tracer")

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._unrecorded = UnrecordedSpans(tracer_provider)

    def enter(self, scope: Scope) -> _Entered | None:
        """Make the request's context current; what :meth:`leave` needs, or None."""
        if records_spans(self._provider):
            return None
        provider = self._unrecorded.provider()
        unrecorded = None if provider is None else _plain_unrecorded_span(provider, scope)
        if unrecorded is not None:
            # The propagator's context would hold nothing but the caller's span, which the
            # request's span replaces: the request's context is that span alone.
            context = trace.set_span_in_context(unrecorded, _EMPTY_CONTEXT)
            return otel_context.attach(context), None
        headers = Headers(scope=scope)
        carrier = {
            name: value
            for name in propagate.get_global_textmap().fields
            if (value := headers.get(name)) is not None
        }
        parent = propagate.extract(carrier)
        span = self.tracer.start_span(scope["method"], context=parent, kind=SpanKind.SERVER)
        return otel_context.attach(trace.set_span_in_context(span, parent)), span

    @staticmethod
    def leave(entered: _Entered) -> None:
        """Restore the context :meth:`enter` replaced (and end the span it started)."""
        token, span = entered
        otel_context.detach(token)
        if span is not None:
            span.end()
