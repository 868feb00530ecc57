"""The request's trace context when spans are not recorded: ids for logs and gRPC calls.

FastAPI's built-in telemetry opens the gateway's SERVER span per request. When the process
records no spans (no OTLP endpoint, no test exporter: :mod:`kit.observability.tracing`),
that span is non-recording anyway, yet FastAPI still builds its attributes, wraps
``send``/``receive`` and walks the middleware stack on every request (about a tenth of the
gateway's CPU on ``GET /articles/pub/:id``). In that case the app excludes the request from
FastAPI's telemetry (:func:`telemetry_excluded`) and :class:`TraceContextMiddleware`, the
outermost layer, does the part that still matters: it continues the caller's W3C trace
context (or starts a trace) in a non-recording span made current for the request, so log
lines carry the trace id and outgoing gRPC calls propagate it. When spans are recorded it
steps aside and FastAPI traces the request in full.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from kit.observability.tracing import records_spans


def telemetry_excluded(scope: MutableMapping[str, Any]) -> bool:
    """FastAPI's ``telemetry["exclude"]``: skip its tracing while no span is recorded."""
    return not records_spans()


class TraceContextMiddleware:
    """Makes the request's trace context current when FastAPI's telemetry is excluded.

    Args:
        tracer_provider: the provider to use (default: the global one).
    """

    def __init__(
        self, app: ASGIApp, *, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.app = app
        self._provider = tracer_provider
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or records_spans(self._provider):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        carrier = {
            name: value
            for name in propagate.get_global_textmap().fields
            if (value := headers.get(name)) is not None
        }
        parent = propagate.extract(carrier)
        span = self.tracer.start_span(scope["method"], context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
            span.end()
