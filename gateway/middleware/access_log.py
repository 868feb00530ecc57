"""One structured log line per request (uvicorn's access log is off: it has no trace ids).

:func:`log_request` writes the line;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` calls it once the answer is sent,
with the status it saw.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

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
