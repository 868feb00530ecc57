"""One structured log line per request (uvicorn's access log is off: it has no trace ids)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.middleware.observed import ObservedResponse
from gateway.middleware.route_template import RouteTemplates

logger = logging.getLogger("gateway.access")


class AccessLogMiddleware:
    """Logs method, route, path, status, duration, the request id and the user id.

    The request id is the one :class:`~gateway.middleware.request_id.RequestIdMiddleware`
    (placed outside this layer) put in the request state; the user id is there when the
    login check (inside) found one.
    """

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
            state = scope.get("state") or {}
            logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                response.status,
                extra={
                    "http_method": scope["method"],
                    "route": self.routes.resolve(scope),
                    "path": scope["path"],
                    "status": response.status,
                    "duration_ms": round(response.elapsed * 1000, 2),
                    "request_id": state.get("request_id"),
                    "user_id": state.get("uid"),
                },
            )
