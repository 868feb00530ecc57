"""Composition root of the follow service: ``python -m services.follow [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT. ``migrate`` applies the Alembic
migrations to ``WEBOOK_FOLLOW_DATABASE_URL`` and exits. Settings come from the environment
(prefix ``WEBOOK_FOLLOW_``) and optionally ``--env-file``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kit.grpcx.cli import ensure_sqlite_directory, run_service
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.follow.grpc_api import FollowServicer
from services.follow.repository import SqlUnitOfWork
from services.follow.repository.cache import FollowStatsCache
from services.follow.service import FollowService
from services.follow.settings import FollowSettings
from webook.follow.v1 import follow_pb2, follow_pb2_grpc

SERVICE_NAME = "follow"

logger = logging.getLogger(__name__)


def build_runner(
    settings: FollowSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> ServiceRunner:
    """The whole follow service process, not yet started; its shutdown closes every pool.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    """
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    cache = FollowStatsCache(redis, ttl_seconds=settings.stats_cache_ttl_seconds)
    sessions = session_factory(engine)
    service = FollowService(lambda: SqlUnitOfWork(sessions, cache))
    runner = ServiceRunner(
        SERVICE_NAME, settings, registration=registration, interceptors=interceptors
    )
    runner.add_service(
        follow_pb2.DESCRIPTOR.services_by_name["FollowService"].full_name,
        follow_pb2_grpc.add_FollowServiceServicer_to_server,
        FollowServicer(service),
    )

    async def close_redis() -> None:
        # The client does not own a pool it was given, so close the pool explicitly.
        await redis.aclose(close_connection_pool=True)

    # Close hooks run after in-flight calls drained, in reverse order: Redis, then SQL.
    runner.on_close(engine.dispose)
    runner.on_close(close_redis)
    return runner


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``serve`` (default) or ``migrate`` (see :mod:`kit.grpcx.cli`)."""
    run_service(SERVICE_NAME, FollowSettings, build_runner, argv)


if __name__ == "__main__":
    main()
