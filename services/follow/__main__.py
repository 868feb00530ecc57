"""Composition root of the follow service: ``python -m services.follow [serve|migrate]``.

Follow relations live in SQL, each user's counts cached in Redis; the command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends
from kit.grpcx.server import ServiceRunner
from services.follow.grpc_api import FollowServicer
from services.follow.repository import SqlUnitOfWork
from services.follow.repository.cache import FollowStatsCache
from services.follow.service import FollowService
from services.follow.settings import FollowSettings


def build_runner(settings: FollowSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The follow process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("follow", settings, **options)
    backends = wire_backends(runner, settings)
    stats = FollowStatsCache(backends.redis, ttl_seconds=settings.stats_cache_ttl_seconds)
    runner.mount(FollowServicer(FollowService(lambda: SqlUnitOfWork(backends.sessions, stats))))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("follow", FollowSettings, build_runner))
