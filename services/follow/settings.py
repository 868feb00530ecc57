"""Settings of the follow service process (environment prefix ``WEBOOK_FOLLOW_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`) and the
outbox relay's (:class:`kit.outbox.settings.OutboxRelaySettings`, the relay that publishes
``UserFollowed``) the service reads:

- ``WEBOOK_FOLLOW_DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``WEBOOK_FOLLOW_STATS_CACHE_TTL_SECONDS``: lifetime of cached follower/followee counts
  (default 600; writes invalidate them, the TTL bounds a stale re-fill);
- ``WEBOOK_FOLLOW_KAFKA_TOPIC_PARTITIONS``: partitions of the topic the relay creates
  (default 3).

Live (also settable in etcd, ``webookctl config set follow <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): ``stats_cache_ttl_seconds`` (read at each cache write),
besides the common ``log_level`` and ``trace_sample_ratio``. Restart-only: the database URL,
ports and addresses (pools and listeners are opened at start) and the relay's settings.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from kit.outbox.settings import OutboxRelaySettings


class FollowSettings(GrpcServiceSettings, OutboxRelaySettings):
    """Validated configuration of ``python -m services.follow``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_FOLLOW_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/follow.db"
    stats_cache_ttl_seconds: int = live_field(600, ge=1)
    kafka_topic_partitions: int = Field(default=3, ge=1)
