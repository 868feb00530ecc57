"""Cache metrics, one set per process; the ``cache`` label tells the caches apart."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CACHE_REQUESTS = Counter(
    "webook_cache_requests_total", "Cache lookups by cache and result.", ["cache", "result"]
)
CACHE_WRITE_ERRORS = Counter(
    "webook_cache_write_errors_total",
    "Cache writes or invalidations that failed (logged, never raised).",
    ["cache", "op"],
)
CACHE_STALE_SERVES = Counter(
    "webook_cache_stale_serves_total",
    "Lookups answered from an in-process copy kept past its feed because Redis was down.",
    ["cache"],
)
CACHE_SERVING_STALE = Gauge(
    "webook_cache_serving_stale",
    "1 while an in-process cache may answer stale copies (feed lost, Redis not up).",
    ["cache"],
)
INVALIDATION_FEED_UP = Gauge(
    "webook_cache_invalidation_feed_up",
    "1 while an in-process cache's pub/sub invalidation feed is confirmed fresh, else 0.",
    ["feed"],
)
INVALIDATION_FEED_RESETS = Counter(
    "webook_cache_invalidation_feed_resets_total",
    "In-process caches emptied because their invalidation subscription was lost or renewed.",
    ["feed"],
)
