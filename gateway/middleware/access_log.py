"""One structured log line per request (uvicorn's access log is off: it has no trace ids)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            state = scope.get("state") or {}
            logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "http_method": scope["method"],
                    "route": self.routes.resolve(scope),
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": state.get("request_id"),
                    "user_id": state.get("uid"),
                },
            )
