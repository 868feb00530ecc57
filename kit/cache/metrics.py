"""Cache metrics, one set per process; the ``cache`` label tells the caches apart."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_REQUESTS = Counter(
    "webook_cache_requests_total", "Cache lookups by cache and result.", ["cache", "result"]
)
CACHE_WRITE_ERRORS = Counter(
    "webook_cache_write_errors_total",
    "Cache writes or invalidations that failed (logged, never raised).",
    ["cache", "op"],
)
