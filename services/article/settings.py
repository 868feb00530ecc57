"""Settings of the article service process (environment prefix ``WEBOOK_ARTICLE_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._REDIS_URL``, ``..._KAFKA_BOOTSTRAP``, ``..._ETCD_ENDPOINTS``,
``..._PEERS``, ...) the service reads the fields below, each as ``WEBOOK_ARTICLE_<NAME>``.

Live (also settable in etcd, ``webookctl config set article <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): the Redis cache lifetimes ``first_page_cache_ttl_seconds``,
``published_cache_ttl_seconds`` and ``popular_published_cache_ttl_seconds`` and the popularity
thresholds that choose between the last two (read at each cache write), besides the common
``log_level`` and ``trace_sample_ratio``. Restart-only: the database URL, ports and addresses
(pools and listeners are opened at start); the in-process cache's sizes (built, and
subscribed to invalidations, at start); the peer timeout (given to the peer clients when
built); the producer, topic and outbox relay settings (built at start).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings


class ArticleSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.article``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_ARTICLE_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/article.db"
    # Lifetime of an author's cached first page (dropped on every write anyway).
    first_page_cache_ttl_seconds: int = live_field(600, ge=1)
    # Lifetime of a cached reader view, and of a popular one (followers or reads at the
    # thresholds below).
    published_cache_ttl_seconds: int = live_field(600, ge=1)
    popular_published_cache_ttl_seconds: int = live_field(3600, ge=1)
    popular_author_followers: int = live_field(10_000, ge=0)
    popular_article_reads: int = live_field(100_000, ge=0)
    # Reader views also kept in process memory (0: none), invalidated across replicas by
    # Redis pub/sub within milliseconds, and kept at most this many seconds.
    published_local_cache_entries: int = Field(default=1000, ge=0)
    published_local_cache_max_age_seconds: float = Field(default=60.0, gt=1.0)
    # While Redis is unreachable (refusing, or known hung), those views are still answered
    # (counted as stale) this many seconds after the invalidation feed last vouched for
    # them, instead of every read going to the database (0: never); dropped on recovery.
    published_local_cache_stale_seconds: float = Field(default=300.0, ge=0)
    # Timeout of calls to the user, follow and interactive services on the read path.
    peer_timeout_seconds: float = Field(default=0.5, gt=0)
    # Kafka producer: events buffered while the broker is unreachable, then dropped.
    event_buffer_size: int = Field(default=10_000, ge=1)
    event_flush_timeout_seconds: float = Field(default=5.0, ge=0)
    # How long reads gather into one ArticleReads record (reads are counted in batches of up
    # to a second anyway): one record per window instead of one per read cuts the producer's,
    # the broker's and the consumer's CPU per read (docs/performance.md).
    event_linger_ms: int = Field(default=50, ge=0, le=1000)
    kafka_topic_partitions: int = Field(default=3, ge=1)
