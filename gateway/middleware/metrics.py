"""Prometheus HTTP metrics, labelled by route template (never by raw path).

- ``webook_http_requests_total{route,method,status}``
- ``webook_http_request_duration_seconds{route,method}``

:func:`record_request` counts and times one request;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` calls it once the answer is sent.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import Scope

from gateway.middleware.route_template import RouteTemplates

HTTP_REQUESTS = Counter(
    "webook_http_requests_total",
    "HTTP requests answered by the gateway.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "webook_http_request_duration_seconds",
    "Time the gateway took to answer an HTTP request.",
    ["route", "method"],
)

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def record_request(routes: RouteTemplates, scope: Scope, status: int, elapsed: float) -> None:
    """Count and time one answered request."""
    route = routes.resolve(scope)
    method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_REQUEST_DURATION.labels(route, method).observe(elapsed)
