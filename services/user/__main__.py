"""Composition root of the user service: ``python -m services.user [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT. ``migrate`` applies the Alembic
migrations to ``WEBOOK_USER_DATABASE_URL`` and exits. Settings come from the environment
(prefix ``WEBOOK_USER_``) and optionally ``--env-file``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kit.grpcx.cli import ensure_sqlite_directory, run_service
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.user.grpc_api import UserServicer
from services.user.repository import SqlUnitOfWork
from services.user.repository.cache import UserProfileCache
from services.user.service import UserService
from services.user.settings import UserSettings
from webook.user.v1 import user_pb2, user_pb2_grpc

SERVICE_NAME = "user"

logger = logging.getLogger(__name__)


def build_runner(
    settings: UserSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> ServiceRunner:
    """The whole user service process, not yet started; its shutdown closes every pool.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    """
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    cache = UserProfileCache(redis, ttl_seconds=settings.profile_cache_ttl_seconds)
    sessions = session_factory(engine)
    service = UserService(lambda: SqlUnitOfWork(sessions, cache), bcrypt_cost=settings.bcrypt_cost)
    runner = ServiceRunner(
        SERVICE_NAME, settings, registration=registration, interceptors=interceptors
    )
    runner.add_service(
        user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
        user_pb2_grpc.add_UserServiceServicer_to_server,
        UserServicer(service),
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
    run_service(SERVICE_NAME, UserSettings, build_runner, argv)


if __name__ == "__main__":
    main()
