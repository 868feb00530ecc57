"""OpenTelemetry server spans for ASGI apps that do not trace requests themselves.

One SERVER span per HTTP request, named ``"<METHOD> <route template>"`` (``GET /items/{id}``;
just the method when no route matched), child of the W3C trace context extracted from the
request headers with the global propagator, with the stable HTTP semantic-convention
attributes (``http.request.method``, ``url.path``, ``url.scheme``, ``http.route``,
``http.response.status_code``) and status ERROR for a 5xx or an exception.

FastAPI already does this (its built-in telemetry, on whenever a tracer provider is
configured: the gateway's case). This middleware never double-traces: it steps aside when
FastAPI's telemetry has a span for the request, or when another instance of itself already
traced it. The route template comes from Starlette's router (``scope["route"]``) or from a
:class:`~gateway.middleware.route_template.RouteTemplates` given at construction.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.middleware.route_template import UNMATCHED, RouteTemplates

_TRACED: Final = "webook.traced"


class _HeadersGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = carrier.getlist(key)
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.keys())


_GETTER: Final = _HeadersGetter()


def _already_traced(scope: Scope) -> bool:
    if scope.get(_TRACED):
        return True
    native = scope.get("fastapi.telemetry")
    return getattr(native, "span", None) is not None


def _route_of(scope: Scope, routes: RouteTemplates | None) -> str | None:
    if routes is not None:
        template = routes.resolve(scope)
        return None if template == UNMATCHED else template
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


class TracingMiddleware:
    """A SERVER span per HTTP request; see the module docstring.

    Args:
        routes: resolves route templates (default: what Starlette's router matched).
        tracer_provider: the provider to use (default: the global one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTemplates | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _already_traced(scope):
            await self.app(scope, receive, send)
            return
        scope[_TRACED] = True
        method = scope["method"]
        parent = propagate.extract(Headers(scope=scope), getter=_GETTER)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        status_code: int | None = None

        async def send_recording_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        span = self.tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_recording_status)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            route = _route_of(scope, self.routes)
            if route is not None:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if status_code is not None:
                span.set_attribute("http.response.status_code", status_code)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
