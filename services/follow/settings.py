"""Settings of the follow service process (environment prefix ``WEBOOK_FOLLOW_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`) the
service reads:

- ``WEBOOK_FOLLOW_DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``WEBOOK_FOLLOW_STATS_CACHE_TTL_SECONDS``: lifetime of cached follower/followee counts
  (default 600; writes invalidate them, the TTL bounds a stale re-fill).

Live (also settable in etcd, ``webookctl config set follow <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): ``stats_cache_ttl_seconds`` (read at each cache write),
besides the common ``log_level`` and ``trace_sample_ratio``. Restart-only: the database URL,
ports and addresses (pools and listeners are opened at start).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field


class FollowSettings(GrpcServiceSettings):
    """Validated configuration of ``python -m services.follow``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_FOLLOW_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/follow.db"
    stats_cache_ttl_seconds: int = live_field(600, ge=1)
