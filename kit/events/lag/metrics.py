"""Metrics of the lag exporter (``python -m kit.events.lag``), one exporter per process.

- ``webook_kafka_group_lag{group,topic,partition}``: the partition's end offset minus the
  group's committed offset (from the partition's beginning offset when the group committed
  nothing there), as the broker reports it; kept at the last value while scrapes fail;
- ``webook_kafka_group_lag_sum{group,topic}``: the same summed over the topic's partitions;
- ``webook_kafka_lag_exporter_last_success_timestamp_seconds``: Unix time of the last scrape
  that read every watched group (0 before the first);
- ``webook_kafka_lag_exporter_scrape_age_seconds``: seconds since that scrape (since the
  exporter started, before the first), computed when ``/metrics`` is read, so it grows while
  the brokers are unreachable even though no scrape completes;
- ``webook_kafka_lag_exporter_scrape_failures_total``: scrapes that failed (brokers
  unreachable, a request refused or timed out).

Unlike ``webook_kafka_consumer_lag`` (kit.events.metrics), which each consumer reports for
the partitions it owns, these series do not vanish when every consumer of a group is down.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

GROUP_LAG = Gauge(
    "webook_kafka_group_lag",
    "End offset minus the group's committed offset, per partition, read from the brokers.",
    ["group", "topic", "partition"],
)
GROUP_LAG_SUM = Gauge(
    "webook_kafka_group_lag_sum",
    "End offsets minus the group's committed offsets, summed over the topic's partitions.",
    ["group", "topic"],
)
LAST_SUCCESS = Gauge(
    "webook_kafka_lag_exporter_last_success_timestamp_seconds",
    "Unix time of the lag exporter's last successful scrape (0 before the first).",
)
SCRAPE_AGE = Gauge(
    "webook_kafka_lag_exporter_scrape_age_seconds",
    "Seconds since the lag exporter's last successful scrape (since its start before one).",
)
SCRAPE_FAILURES = Counter(
    "webook_kafka_lag_exporter_scrape_failures_total",
    "Lag scrapes that failed: brokers unreachable, a request refused or timed out.",
)
