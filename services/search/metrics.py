"""Metrics of the search service (names start with ``webook_search_``).

- ``webook_search_queries_total{type,result}``: searches by type filter (``all``,
  ``article``, ``user``) and result (``ok``, ``invalid``: refused query, ``error``);
- ``webook_search_query_duration_seconds{type}``: time to answer a search (parse, match,
  rank, snippets);
- ``webook_search_index_documents{type}``: searchable documents (tombstones excluded),
  refreshed after every commit;
- ``webook_search_sync_changes_total{source,result}``: changes offered to the index by
  ``kafka``, ``grpc`` or ``reindex``: ``applied`` (newer than what the index held),
  ``superseded`` (stale or duplicate: ignored), ``invalid`` (refused before indexing);
- ``webook_search_pending_changes``: changes accepted but not yet committed;
- ``webook_search_index_commits_total{result}`` (``ok``/``error``),
  ``webook_search_index_commit_duration_seconds`` and ``webook_search_index_commit_batch_size``.

Undecodable Kafka records are counted by the consumer
(``webook_kafka_consumed_total{result="undecodable"}``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUERIES = Counter(
    "webook_search_queries_total",
    "Searches by type filter and result (ok, invalid, error).",
    ["type", "result"],
)
QUERY_SECONDS = Histogram(
    "webook_search_query_duration_seconds",
    "Time to answer a search.",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
INDEX_DOCUMENTS = Gauge(
    "webook_search_index_documents",
    "Searchable documents in the index by type.",
    ["type"],
)
SYNC_CHANGES = Counter(
    "webook_search_sync_changes_total",
    "Index changes by source (kafka, grpc, reindex) and result (applied, superseded, invalid).",
    ["source", "result"],
)
PENDING_CHANGES = Gauge(
    "webook_search_pending_changes",
    "Index changes accepted and not yet committed.",
)
COMMITS = Counter(
    "webook_search_index_commits_total",
    "Index commits by result (ok, error).",
    ["result"],
)
COMMIT_SECONDS = Histogram(
    "webook_search_index_commit_duration_seconds",
    "Time to write and commit one batch of changes.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COMMIT_BATCH = Histogram(
    "webook_search_index_commit_batch_size",
    "Changes per committed batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
