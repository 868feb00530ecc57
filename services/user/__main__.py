"""Composition root of the user service: ``python -m services.user [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT. ``migrate`` applies the Alembic
migrations to ``WEBOOK_USER_DATABASE_URL`` and exits. Settings come from the environment
(prefix ``WEBOOK_USER_``) and optionally ``--env-file``. The process publishes
``UserChanged`` events (:mod:`services.user.events`) through a non-blocking producer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kit.events import EventProducer, ProducerConfig
from kit.grpcx.cli import ensure_sqlite_directory, run_service
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import ProducingServiceRunner, Registration
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.user.events import KafkaUserEvents, topic_specs
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
) -> ProducingServiceRunner[EventProducer]:
    """The whole user service process, not yet started; its shutdown closes every pool.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    """
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    cache = UserProfileCache(redis, ttl_seconds=settings.profile_cache_ttl_seconds)
    sessions = session_factory(engine)
    producer = EventProducer(
        ProducerConfig(
            bootstrap=settings.kafka_bootstrap,
            topics=topic_specs(settings.kafka_topic_partitions),
            manage_topics=settings.kafka_manage_topics,
            buffer_size=settings.event_buffer_size,
            flush_timeout_s=settings.event_flush_timeout_seconds,
            client_id=f"webook-{SERVICE_NAME}",
        )
    )
    service = UserService(
        lambda: SqlUnitOfWork(sessions, cache),
        bcrypt_cost=settings.bcrypt_cost,
        events=KafkaUserEvents(producer),
    )
    runner = ProducingServiceRunner(
        SERVICE_NAME, settings, producer, registration=registration, interceptors=interceptors
    )
    runner.add_service(
        user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
        user_pb2_grpc.add_UserServiceServicer_to_server,
        UserServicer(service),
    )

    async def close_redis() -> None:
        # The client does not own a pool it was given, so close the pool explicitly.
        await redis.aclose(close_connection_pool=True)

    # Close hooks run after in-flight calls drained, in reverse order: the producer flushes
    # what those calls emitted, then Redis and SQL close.
    runner.on_close(engine.dispose)
    runner.on_close(close_redis)
    runner.on_close(producer.stop)
    return runner


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``serve`` (default) or ``migrate`` (see :mod:`kit.grpcx.cli`)."""
    run_service(SERVICE_NAME, UserSettings, build_runner, argv)


if __name__ == "__main__":
    main()
