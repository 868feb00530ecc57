"""Outbox metrics, one set per process (labelled by outbox table).

- ``webook_outbox_pending{outbox}``: rows not yet sent, as of the relay's last poll;
- ``webook_outbox_lag_seconds{outbox}``: age of the oldest pending row (0 when none): how
  far behind the broker the database is;
- ``webook_outbox_published_total{outbox,topic}``: rows the broker acknowledged;
- ``webook_outbox_failures_total{outbox,topic}``: failed publish attempts (retried later);
- ``webook_outbox_replayed_total{outbox}``: sent rows made pending again because the broker
  lost acknowledged records (the relay's replay window; only a broker without durable
  storage does that).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PENDING = Gauge("webook_outbox_pending", "Outbox rows not yet published.", ["outbox"])
LAG = Gauge("webook_outbox_lag_seconds", "Age of the oldest unpublished outbox row.", ["outbox"])
PUBLISHED = Counter(
    "webook_outbox_published_total",
    "Outbox rows published and acknowledged by the broker.",
    ["outbox", "topic"],
)
FAILURES = Counter(
    "webook_outbox_failures_total",
    "Failed attempts to publish an outbox row (each is retried with back-off).",
    ["outbox", "topic"],
)
REPLAYED = Counter(
    "webook_outbox_replayed_total",
    "Sent outbox rows published again because the broker lost acknowledged records.",
    ["outbox"],
)
