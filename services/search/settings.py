"""Settings of the search service process (environment prefix ``WEBOOK_SEARCH_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._KAFKA_BOOTSTRAP``, ``..._ETCD_ENDPOINTS``, ``..._PEERS``, ...) the
service reads the fields below, each as ``WEBOOK_SEARCH_<NAME>``.

The service keeps no SQL: ``DATABASE_URL`` and ``REDIS_URL`` are not used, except that
when ``DATA_DIR`` is empty and the launcher handed the service a SQLite database URL (as
``make run``, the end-to-end tests and the benchmarks do for every service), the index goes
next to that file, so that each local stack has its own index (:func:`resolve_data_dir`).

Live: only the common ``log_level`` and ``trace_sample_ratio`` (:mod:`kit.liveconfig`).
Everything below is restart-only: the data directory and the tantivy writer's heap and
threads (the index is opened with them at start), ``recency_boost`` (compiled into the
index's scoring when it opens), the commit cadence, the sync consumer's switch, group,
batching and Kafka settings (it joins its group at start), the reindex and snapshot
settings (their tasks are scheduled at start), ports and addresses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from sqlalchemy.exc import ArgumentError

from kit.config import GrpcServiceSettings
from kit.sql import sqlite_file
from services.search.reconcile import ReconcileSettings
from services.search.snapshot import SnapshotSettings

DEFAULT_DATA_DIR: Final = Path(".run/search")


class SearchSettings(GrpcServiceSettings, SnapshotSettings, ReconcileSettings):
    """Validated configuration of ``python -m services.search``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_SEARCH_", extra="ignore", frozen=True)

    # Where the index lives (a volume in Kubernetes). Empty: next to a SQLite database_url,
    # else .run/search. One process at a time may write a directory (tantivy's lock).
    data_dir: str = ""
    # Group commit: accepted changes are committed together every interval, or at once
    # when this many wait. A Kafka batch or an RPC is acknowledged after its commit.
    commit_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    commit_max_batch: int = Field(default=2000, ge=1, le=100_000)
    # Memory the tantivy writer buffers before it flushes a segment, and its threads.
    writer_heap_bytes: int = Field(default=64_000_000, ge=15_000_000)
    writer_threads: int = Field(default=1, ge=1, le=16)
    # Score added to documents updated within the last week (see services.search.index).
    recency_boost: float = Field(default=1.0, ge=0)
    # The sync consumer (ArticlePublished, ArticleWithdrawn, UserChanged) runs in the
    # service process unless disabled. Its group is "<prefix>-<index id>": every index
    # (every replica's data directory) consumes every event, and its committed offsets
    # belong to the index they describe.
    sync_consumer_enabled: bool = True
    sync_group_prefix: str = Field(default="search-indexer", min_length=1, max_length=100)
    sync_batch_size: int = Field(default=500, ge=1, le=10_000)
    sync_batch_wait_seconds: float = Field(default=0.5, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)
    # Rebuild from the article and user services in the background when the service
    # starts on an index without documents (first deployment, a new replica's empty volume).
    # The replica reports ready only once that rebuild succeeded (and its sync consumer
    # caught up); a failed attempt (the sources not up yet) is retried after a pause that
    # doubles from the first to the longest.
    reindex_when_empty: bool = True
    reindex_retry_first_seconds: float = Field(default=0.5, gt=0, le=60)
    reindex_retry_max_seconds: float = Field(default=15.0, gt=0, le=600)
    # Page sizes of the reindex's ListPub (at most 100) and ListUsers (at most 1000) calls,
    # changes offered to the index per call of the writer, and each call's timeout.
    reindex_article_page: int = Field(default=100, ge=1, le=100)
    reindex_user_page: int = Field(default=500, ge=1, le=1000)
    reindex_chunk: int = Field(default=1000, ge=1, le=100_000)
    reindex_call_timeout_seconds: float = Field(default=10.0, gt=0)


def resolve_data_dir(settings: SearchSettings) -> Path:
    """The index's data directory: ``data_dir``, else beside a SQLite ``database_url``
    (``<dir>/search.db`` → ``<dir>/search-index``), else :data:`DEFAULT_DATA_DIR`."""
    if settings.data_dir:
        return Path(settings.data_dir)
    if settings.database_url:
        try:
            database = sqlite_file(settings.database_url)
        except ArgumentError:
            return DEFAULT_DATA_DIR
        if database is not None:
            return database.parent / "search-index"
    return DEFAULT_DATA_DIR
