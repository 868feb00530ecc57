"""Prometheus metrics of the edge middleware (rate limit, concurrency, body size).

- ``webook_ratelimit_requests_total{rule,result}``: checks by outcome; ``result`` is
  ``allowed`` or ``rejected`` when a limiter decided (Redis, or the in-process fallback
  while Redis is down), ``error`` when Redis was unreachable and the rule's policy (fail
  open / fail closed) decided without one.
- ``webook_ratelimit_backend_errors_total{rule,policy}``: checks that could not reach Redis.
- ``webook_http_active_requests``: requests inside the concurrency limit now.
- ``webook_http_rejected_total{reason}``: ``concurrency`` (503) and ``body_too_large`` (413).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RATELIMIT_REQUESTS = Counter(
    "webook_ratelimit_requests_total",
    "Rate limit checks by rule and outcome.",
    ["rule", "result"],
)
RATELIMIT_BACKEND_ERRORS = Counter(
    "webook_ratelimit_backend_errors_total",
    "Rate limit checks that could not reach their backend, by rule and failure policy.",
    ["rule", "policy"],
)
HTTP_ACTIVE_REQUESTS = Gauge(
    "webook_http_active_requests",
    "HTTP requests being served inside the concurrency limit.",
)
HTTP_REJECTED = Counter(
    "webook_http_rejected_total",
    "HTTP requests refused by the edge before reaching a route, by reason.",
    ["reason"],
)
