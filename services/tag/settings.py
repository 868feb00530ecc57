"""Settings of the tag service process (environment prefix ``WEBOOK_TAG_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._KAFKA_BOOTSTRAP``, ``..._PEERS``, ...) and the outbox relay's
(:class:`kit.outbox.settings.OutboxRelaySettings`) the service reads, each as
``WEBOOK_TAG_<NAME>``:

- ``DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``MAX_TAGS_PER_USER`` / ``MAX_TAGS_PER_RESOURCE``: how many tags a user may own (default
  1000) and a resource may carry (default 20);
- ``PEER_TIMEOUT_SECONDS``: deadline of each call to the article service;
- ``CACHE_MAX_USERS`` / ``CACHE_MAX_RESOURCES`` / ``CACHE_MAX_AGE_SECONDS``: the in-memory
  cache's bounds (entries of each kind, and how long an entry is trusted);
- ``PRELOAD_ENABLED`` / ``PRELOAD_DAYS`` / ``PRELOAD_MAX_USERS`` / ``PRELOAD_MAX_ROWS``: the
  start-up preload of the users with tag changes in the last days (docs/tag.md);
- ``CACHE_CONSUMER_ENABLED`` / ``CACHE_CONSUMER_GROUP_PREFIX``: the consumer of
  ``TagsChanged`` that keeps the cache current (one group per process: the prefix and a
  random suffix), its batching and Kafka group settings.

Live (also settable in etcd, ``webookctl config set tag <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): the two tag limits (read at each change), besides the common
``log_level`` and ``trace_sample_ratio``. Restart-only: the rest.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings
from services.tag.domain import TagLimits
from services.tag.service import PreloadLimits


class TagSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.tag``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_TAG_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/tag.db"
    max_tags_per_user: int = live_field(1000, ge=1, le=100_000)
    max_tags_per_resource: int = live_field(20, ge=1, le=1000)
    peer_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    cache_max_users: int = Field(default=20_000, ge=1)
    cache_max_resources: int = Field(default=200_000, ge=1)
    cache_max_age_seconds: float = Field(default=3600.0, gt=0)
    preload_enabled: bool = True
    preload_days: float = Field(default=7.0, gt=0, le=365)
    preload_max_users: int = Field(default=10_000, ge=0)
    preload_max_rows: int = Field(default=500_000, ge=0)
    cache_consumer_enabled: bool = True
    cache_consumer_group_prefix: str = Field(default="tag-cache", min_length=1, max_length=200)
    cache_batch_size: int = Field(default=500, ge=1, le=10_000)
    cache_batch_wait_seconds: float = Field(default=0.2, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)

    def tag_limits(self) -> TagLimits:
        """How many tags a user may own and a resource may carry."""
        return TagLimits(per_user=self.max_tags_per_user, per_resource=self.max_tags_per_resource)

    def preload_limits(self) -> PreloadLimits:
        """Which users the start-up preload caches."""
        return PreloadLimits(
            days=self.preload_days,
            max_users=self.preload_max_users,
            max_rows=self.preload_max_rows,
        )
