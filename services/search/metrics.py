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
  ``webook_search_index_commit_duration_seconds`` and ``webook_search_index_commit_batch_size``;
- ``webook_search_ready``: 1 once the replica answers SERVING and is registered (its empty
  index rebuilt, its sync consumer caught up), else 0; it never goes back to 0;
- ``webook_search_not_ready_seconds``: seconds since the process started while it is not
  ready, 0 once ready (how long a replica has been catching up).

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
    "Index changes by source (kafka, grpc, reindex) and result (applied, superseded, invalid, "
    "skipped: a valid event with nothing to index).",
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
# Author renames and the reconciliation sweep (services.search.service, .reconcile).
AUTHOR_NAME_REWRITES = Counter(
    "webook_search_author_name_rewrites_total",
    "Indexed articles rewritten because their author's nickname changed.",
)
RECONCILE_SWEEPS = Counter(
    "webook_search_reconcile_sweeps_total",
    "Reconciliation sweeps of the index against the article service, by result (ok, error).",
    ["result"],
)
RECONCILE_REPAIRS = Counter(
    "webook_search_reconcile_repairs_total",
    "Index repairs made by the sweep, by kind (missing, stale, removed).",
    ["kind"],
)
RECONCILE_LAST_SUCCESS = Gauge(
    "webook_search_reconcile_last_success_timestamp_seconds",
    "Unix time at which the last reconciliation sweep completed (0: none yet).",
)

# Replica bootstrap from a peer's snapshot (services.search.snapshot):
# - webook_search_snapshots_served_total{result}: PrepareSnapshot answers, ok or error;
# - webook_search_bootstraps_total{result}: starts on an empty data directory: peer (the
#   index was copied from a peer), rebuild (no peer to copy from: rebuilt from the source
#   services), failed (a peer's copy failed: rebuilt from the source services);
# - webook_search_snapshot_bytes_total{direction}: snapshot bytes sent to peers and
#   received from a peer.
SNAPSHOTS_SERVED = Counter(
    "webook_search_snapshots_served_total",
    "Snapshots of the index prepared for a peer, by result (ok, error).",
    ["result"],
)
BOOTSTRAPS = Counter(
    "webook_search_bootstraps_total",
    "Starts on an empty data directory by result (peer, rebuild, failed).",
    ["result"],
)
SNAPSHOT_BYTES = Counter(
    "webook_search_snapshot_bytes_total",
    "Snapshot bytes copied, by direction (sent, received).",
    ["direction"],
)

# Readiness of the replica (services.search.__main__): the gauges read the runner's state.
READY = Gauge(
    "webook_search_ready",
    "1 once the replica serves (empty index rebuilt, sync consumer caught up), else 0.",
)
NOT_READY_SECONDS = Gauge(
    "webook_search_not_ready_seconds",
    "Seconds since the process started while it is not ready; 0 once ready.",
)
