"""Prometheus HTTP metrics, labelled by route template (never by raw path).

- ``webook_http_requests_total{route,method,status}``
- ``webook_http_request_duration_seconds{route,method}``
- ``webook_http_envelope_codes_total{route,method,code}``: one per answer that carries the
  envelope, by its business code (``"0"`` success, ``"4"`` bad input, ``"5"`` system error,
  ``"401002"``, the edge's ``"429"``/``"413"``/``"503"``, ...). Answers are HTTP 200 either
  way, so this, not the status, is what shows a failing backend to the error-ratio SLOs.
  Answers without an envelope (the empty 401, ``/metrics``, the probes) are not counted.

:func:`record_request` counts and times one request;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` calls it once the answer is sent,
with the code noted where the envelope was built (:mod:`gateway.envelope`).
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
HTTP_ENVELOPE_CODES = Counter(
    "webook_http_envelope_codes_total",
    "Answers carrying the JSON envelope, by the envelope's business code.",
    ["route", "method", "code"],
)

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


_Children = tuple[Counter, Histogram]
# The label children of each (route, method, status) and (route, method, code) seen:
# ``labels()`` takes a lock and builds its key on every call. Bounded like the label sets
# themselves (route templates, known methods, status codes, the envelope's codes).
_children: dict[tuple[str, str, int], _Children] = {}
_code_children: dict[tuple[str, str, int], Counter] = {}


def record_request(
    routes: RouteTemplates,
    scope: Scope,
    status: int,
    elapsed: float,
    envelope_code: int | None = None,
) -> None:
    """Count and time one answered request; count its envelope code unless None."""
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
    if envelope_code is not None:
        code_key = (route, method, envelope_code)
        codes = _code_children.get(code_key)
        if codes is None:
            codes = HTTP_ENVELOPE_CODES.labels(route, method, str(envelope_code))
            _code_children[code_key] = codes
        codes.inc()
