"""One structured log line per request (uvicorn's access log is off: it has no trace ids).

:func:`log_request` writes the line; :class:`AccessLogMiddleware` is it alone as an ASGI
layer, and :class:`~gateway.middleware.gateway_layer.GatewayLayer` runs it with the request
id, metrics and the other concerns in one layer (as the gateway does).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.middleware.observed import ObservedResponse
from gateway.middleware.route_template import RouteTemplates

logger = logging.getLogger("gateway.access")


def log_request(routes: RouteTemplates, scope: Scope, status: int, elapsed: float) -> None:
    """Log method, route, path, status, duration, the request id and the user id.

    The request id is the one the request-id layer (outside the access log) put in the
    request state; the user id is there when the login check (inside) found one.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    method, path = scope["method"], scope["path"]
    state = scope.get("state") or {}
    logger.info(
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "http_method": method,
            "route": routes.resolve(scope),
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "request_id": state.get("request_id"),
            "user_id": state.get("uid"),
        },
    )


class AccessLogMiddleware:
    """Logs every HTTP request with :func:`log_request`."""

    def __init__(self, app: ASGIApp, *, routes: RouteTemplates) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = ObservedResponse(send)
        try:
            await self.app(scope, receive, response)
        finally:
            log_request(self.routes, scope, response.status, response.elapsed)
