"""Metrics of the tag service's in-memory cache (one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CACHE_REQUESTS = Counter(
    "webook_tag_cache_requests_total",
    "Lookups of a user's or a resource's tags in the in-memory cache, by result (hit, miss).",
    ["result"],
)
PRELOAD_ENTRIES = Gauge(
    "webook_tag_cache_preload_entries",
    "Entries (users' tag lists and resources' tag sets) loaded by the start-up preload.",
)
PRELOAD_ROWS = Gauge(
    "webook_tag_cache_preload_rows",
    "SQL rows (tags, resources, links) read by the start-up preload.",
)
PRELOAD_SECONDS = Gauge(
    "webook_tag_cache_preload_duration_seconds",
    "How long the start-up preload of the in-memory cache took.",
)
CACHE_ENTRIES = Gauge(
    "webook_tag_cache_entries",
    "Entries in the in-memory tag cache now, by kind (user, resource).",
    ["kind"],
)
