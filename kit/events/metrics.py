"""Kafka metrics, one set per process.

- ``webook_kafka_produced_total{topic,result}``: ``ok`` per event the broker acknowledged,
  ``error`` per failed delivery attempt of an event (it stays buffered and is retried);
- ``webook_kafka_producer_dropped_total{topic}``: events given up: the buffer was full, or
  the producer stopped before they could be delivered;
- ``webook_kafka_producer_buffered{topic}``: events waiting in the producer's buffer;
- ``webook_kafka_producer_replayed_total{topic}``: acknowledged events sent again because
  the broker lost them (see the producer's replay window);
- ``webook_kafka_consumed_total{topic,group,result}``: ``ok`` per message handled,
  ``undecodable`` per message skipped, ``failed`` per message of a handler attempt that
  raised (the batch is retried);
- ``webook_kafka_batch_size{topic,group}``: messages per handled batch;
- ``webook_kafka_consumer_lag{topic,group}``: end offsets minus committed offsets over the
  partitions this process owns, refreshed periodically;
- ``webook_kafka_commit_failures_total{group}``: offset commits given up (the batch will be
  delivered again: at-least-once);
- ``webook_kafka_consumer_log_resets_total{topic,group}``: partitions read again from their
  beginning because the broker replaced the log a commit went to (:mod:`kit.events.logcheck`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PRODUCED = Counter(
    "webook_kafka_produced_total",
    "Events sent to Kafka by topic and result (ok, or error per failed attempt).",
    ["topic", "result"],
)
PRODUCER_DROPPED = Counter(
    "webook_kafka_producer_dropped_total",
    "Events the producer gave up (buffer full, or still buffered at stop).",
    ["topic"],
)
PRODUCER_BUFFERED = Gauge(
    "webook_kafka_producer_buffered",
    "Events waiting in producers' in-memory buffers.",
    ["topic"],
)
PRODUCER_REPLAYED = Counter(
    "webook_kafka_producer_replayed_total",
    "Acknowledged events sent again because the broker lost them.",
    ["topic"],
)
CONSUMED = Counter(
    "webook_kafka_consumed_total",
    "Messages consumed by topic, group and result (ok, undecodable, failed).",
    ["topic", "group", "result"],
)
BATCH_SIZE = Histogram(
    "webook_kafka_batch_size",
    "Messages per batch handed to a handler.",
    ["topic", "group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "webook_kafka_consumer_lag",
    "End offsets minus committed offsets of the partitions this consumer owns.",
    ["topic", "group"],
)
COMMIT_FAILURES = Counter(
    "webook_kafka_commit_failures_total",
    "Offset commits given up; their batches will be delivered again.",
    ["group"],
)
LOG_RESETS = Counter(
    "webook_kafka_consumer_log_resets_total",
    "Partitions read again from the start: the broker replaced the log a commit went to.",
    ["topic", "group"],
)
