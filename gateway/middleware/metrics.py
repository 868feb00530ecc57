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


_Children = tuple[Counter, Histogram]
# The two label children of each (route, method, status) seen: ``labels()`` takes a lock and
# builds its key on every call. Bounded like the label sets themselves (route templates,
# known methods, status codes).
_children: dict[tuple[str, str, int], _Children] = {}


def record_request(routes: RouteTemplates, scope: Scope, status: int, elapsed: float) -> None:
    """Count and time one answered request."""
    route = routes.resolve(scope)
    method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
    key = (route, method, status)
    children = _children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_REQUEST_DURATION.labels(route, method),
        )
        _children[key] = children
    requests, duration = children
    requests.inc()
    duration.observe(elapsed)
