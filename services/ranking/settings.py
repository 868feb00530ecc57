"""Settings of the ranking service process (environment prefix ``WEBOOK_RANKING_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`; the
service uses Redis, no database) it reads:

- ``WINDOW_DAYS``: articles last updated this many days back are ranked (default 7);
- ``BATCH_SIZE``: articles read per ``ListPub`` / ``GetByIds`` call (default 100, the most
  either accepts);
- ``TOP_K``: articles kept (default 100);
- ``TTL_SECONDS``: lifetime of a ranking in Redis and in memory, from its computation
  (default 900; the scheduler should run the job well within it);
- ``REFRESH_INTERVAL_SECONDS``: how often each replica reads the ranking from Redis
  (default 10);
- ``PEER_TIMEOUT_SECONDS``: deadline of each call to the article and interactive services.

Live (also settable in etcd, ``webookctl config set ranking <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): every field above, read at each job run or refresh, besides
the common ``log_level`` and ``trace_sample_ratio``. Restart-only: ports and addresses.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field
from services.ranking.job import JobConfig


class RankingSettings(GrpcServiceSettings):
    """Validated configuration of ``python -m services.ranking``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_RANKING_", extra="ignore", frozen=True)

    window_days: int = live_field(7, ge=1, le=365)
    batch_size: int = live_field(100, ge=1, le=100)
    top_k: int = live_field(100, ge=1, le=1000)
    ttl_seconds: int = live_field(900, ge=1)
    refresh_interval_seconds: float = live_field(10.0, gt=0, le=3600)
    peer_timeout_seconds: float = live_field(2.0, gt=0, le=60)

    def job_config(self) -> JobConfig:
        """What a job run reads and keeps."""
        return JobConfig(
            window_days=self.window_days,
            batch_size=self.batch_size,
            top_k=self.top_k,
            ttl_ms=self.ttl_seconds * 1000,
        )
