"""Composition root of the follow service: ``python -m services.follow [serve|migrate]``.

Follow relations live in SQL and each user's follower/followee counts are cached in Redis;
the shared process wiring is :func:`kit.grpcx.process.backed_runner`.
"""

from __future__ import annotations

from kit.grpcx.cli import run_service
from kit.grpcx.process import Backends, backed_runner
from services.follow.grpc_api import FollowServicer
from services.follow.repository import SqlUnitOfWork
from services.follow.repository.cache import FollowStatsCache
from services.follow.service import FollowService
from services.follow.settings import FollowSettings


def servicer(backends: Backends, settings: FollowSettings) -> FollowServicer:
    """Relations over SQL with the counts cached."""
    stats = FollowStatsCache(backends.redis, ttl_seconds=settings.stats_cache_ttl_seconds)
    return FollowServicer(FollowService(lambda: SqlUnitOfWork(backends.sessions, stats)))


build_runner = backed_runner("follow", servicer)

if __name__ == "__main__":
    raise SystemExit(run_service("follow", FollowSettings, build_runner))
