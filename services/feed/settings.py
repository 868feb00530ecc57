"""Settings of the feed service process (environment prefix ``WEBOOK_FEED_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`:
``..._GRPC_PORT``, ``..._KAFKA_BOOTSTRAP``, ``..._PEERS``, ...) the service reads, each as
``WEBOOK_FEED_<NAME>``:

- ``DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``PEER_TIMEOUT_SECONDS``: deadline of each call to the follow service;
- ``MAX_FOLLOWEES``: how many of a reader's followees a read looks at for big authors;
- ``FANOUT_RESUME_INTERVAL_SECONDS``: how often unfinished fan-outs are resumed;
- the article event consumer's group and batching (``ARTICLE_*``), the like and follow
  event consumer's (``INTERACTION_*``), and the Kafka group settings both share.

Live (also settable in etcd, ``webookctl config set feed <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): ``big_author_followers`` (above it an author's new
publications are pulled, not pushed; read at each publication) and ``fanout_batch_size``
(followers per fan-out transaction), besides the common ``log_level`` and
``trace_sample_ratio``. Restart-only: the rest.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field


class FeedSettings(GrpcServiceSettings):
    """Validated configuration of ``python -m services.feed``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_FEED_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/feed.db"
    big_author_followers: int = live_field(10_000, ge=1)
    fanout_batch_size: int = live_field(500, ge=1, le=5_000)
    peer_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    max_followees: int = Field(default=2_000, ge=1, le=100_000)
    # Seconds between passes that finish fan-outs left unfinished (a crash, an outage).
    fanout_resume_interval_seconds: float = Field(default=30.0, gt=0)
    # The consumer of article events runs in the service process unless disabled.
    article_consumer_enabled: bool = True
    article_consumer_group: str = "feed-articles"
    article_batch_size: int = Field(default=100, ge=1, le=10_000)
    article_batch_wait_seconds: float = Field(default=0.5, gt=0)
    # The consumer of likes and follows, in a group of its own so that a publication's
    # fan-out never holds them back; also in the service process unless disabled.
    interaction_consumer_enabled: bool = True
    interaction_consumer_group: str = "feed-interactions"
    interaction_batch_size: int = Field(default=100, ge=1, le=10_000)
    interaction_batch_wait_seconds: float = Field(default=0.5, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_lag_interval_seconds: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=3, ge=1)
