"""Metrics of the feed service (one set per process).

- ``webook_feed_fanout_rows_total``: inbox rows written by fan-out and targeted events
  (its rate is the write load the push model costs);
- ``webook_feed_fanout_lag_seconds``: from an event's time to the commit of each batch
  of its inbox rows;
- ``webook_feed_read_seconds{model}``: GetFeed latency, ``push_only`` when the reader
  follows no author with pull events, ``merged`` when outboxes were merged in;
- ``webook_feed_big_author_flips_total{to}``: authors whose flag changed at a publication
  (``big``: now pulled, ``ordinary``: pushed again);
- ``webook_feed_skipped_events_total{reason}``: consumed events that change nothing
  (``withdrawn``: a publication older than the article's withdrawal; ``self``: an event
  whose recipient is its actor).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

FANOUT_ROWS = Counter(
    "webook_feed_fanout_rows_total", "Inbox rows written (fan-out and targeted events)."
)
FANOUT_LAG = Histogram(
    "webook_feed_fanout_lag_seconds",
    "Seconds from an event's time to the commit of a batch of its inbox rows.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
READ_SECONDS = Histogram(
    "webook_feed_read_seconds",
    "GetFeed latency by read model.",
    ["model"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BIG_AUTHOR_FLIPS = Counter(
    "webook_feed_big_author_flips_total",
    "Authors whose big flag changed, by the side they moved to.",
    ["to"],
)
SKIPPED_EVENTS = Counter(
    "webook_feed_skipped_events_total",
    "Consumed events that change nothing, by reason.",
    ["reason"],
)
# Every series exported at 0 from the start (a rate needs the series to exist).
for _model in ("push_only", "merged"):
    READ_SECONDS.labels(_model)
for _side in ("big", "ordinary"):
    BIG_AUTHOR_FLIPS.labels(_side)
for _reason in ("withdrawn", "self"):
    SKIPPED_EVENTS.labels(_reason)
