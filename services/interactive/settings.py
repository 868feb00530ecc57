"""Settings of the interactive service process (environment prefix ``WEBOOK_INTERACTIVE_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._REDIS_URL``, ``..._KAFKA_BOOTSTRAP``, ...) the service reads the
fields below, each as ``WEBOOK_INTERACTIVE_<NAME>``.

Live (also settable in etcd, ``webookctl config set interactive <field> <json>``, applied
within a second, :mod:`kit.liveconfig`): ``counts_cache_ttl_seconds`` (read at each cache
write); ``migration_mode`` (read when each unit of work begins), and the validator's
``migration_validator_rows_per_second`` (read before each batch) and
``migration_validator_latency_threshold_seconds`` (from the next validation run) and
``migration_switch_wait_seconds`` (read at each wait at the ``switching`` barrier); besides
the common ``log_level`` and ``trace_sample_ratio``. Restart-only: the database URLs, ports
and addresses (pools and listeners are opened at start); the local cache switch and sizes
(the in-process cache and its invalidation subscription are built at start); the read
consumer's and the migration fixer's switches, groups, batching and Kafka settings
(consumers join their group at start); the article settings of
:class:`clients.article.ArticleTargetsSettings`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from clients.article import ArticleTargetsSettings
from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from kit.migrator import Mode as MigrationMode


class InteractiveSettings(GrpcServiceSettings, ArticleTargetsSettings):
    """Validated configuration of ``python -m services.interactive``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_INTERACTIVE_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/interactive.db"
    counts_cache_ttl_seconds: int = live_field(900, ge=1)
    # Counts and per-user flags also kept in process memory, dropped on every replica when a
    # write announces a change on Redis pub/sub (within milliseconds), kept at most
    # ``local_cache_max_age_seconds``. Disabled: every Get asks Redis.
    local_cache_enabled: bool = True
    local_counts_entries: int = Field(default=10_000, ge=1)
    local_flags_entries: int = Field(default=50_000, ge=1)
    local_cache_max_age_seconds: float = Field(default=60.0, gt=1.0)
    # While Redis is unreachable (refusing, or known hung), those copies are still answered
    # (counted as stale) this many seconds after the invalidation feed last vouched for
    # them, instead of every Get going to the database (0: never); dropped on recovery.
    local_cache_stale_seconds: float = Field(default=300.0, ge=0)
    # Likes and collects need a published article: ArticleTargetsSettings (clients.article)
    # says how long the article service is asked, and how long a "published" answer is
    # trusted in process (an article withdrawn that recently may still take a like).
    # The read-event consumer runs inside the service process unless disabled.
    read_consumer_enabled: bool = True
    read_consumer_group: str = "interactive-read-counter"
    read_batch_size: int = Field(default=100, ge=1, le=10_000)
    read_batch_wait_seconds: float = Field(default=1.0, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)
    # Moving the tables to another database (docs/interactive.md, "Migrating the tables").
    # Empty: no migration, the service uses database_url alone. Set: writes go through
    # kit.migrator's double write in migration_mode (the live setting all replicas follow;
    # the admin API's SetMode holds another mode in one process until the setting changes),
    # the fixer consumes the difference topic, and MigratorService is served.
    migration_destination_url: str = ""
    migration_mode: MigrationMode = live_field(MigrationMode.SOURCE_ONLY)
    # How long a request waits while the mode is "switching" (the barrier between
    # source_first and destination_first) before failing UNAVAILABLE (retryable). Below the
    # callers' deadlines (the gateway's grpc_timeout), above the switch's usual length.
    migration_switch_wait_seconds: float = live_field(2.5, gt=0)
    migration_validator_rows_per_second: float = live_field(2000.0, ge=0)
    migration_validator_latency_threshold_seconds: float = live_field(0.5, gt=0)
    migration_validator_batch_size: int = Field(default=500, ge=1, le=10_000)
    migration_incremental_interval_seconds: float = Field(default=10.0, ge=0)
    migration_fixer_group: str = "interactive-migration-fixer"
    # The producer of the validator's difference events.
    event_buffer_size: int = Field(default=10_000, ge=1)
    event_flush_timeout_seconds: float = Field(default=5.0, ge=0)
