"""Composition root of the interactive service: ``python -m services.interactive [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT; the read-event consumer runs in the
same process, started once the server listens and stopped before in-flight calls drain. The
in-process counts cache's invalidation feed is subscribed as the process is built and
unsubscribed once in-flight calls drained, before Redis closes.
``migrate`` applies the Alembic migrations to ``WEBOOK_INTERACTIVE_DATABASE_URL`` and exits.
Settings come from the environment (prefix ``WEBOOK_INTERACTIVE_``) and optionally
``--env-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from kit.config import load_settings
from kit.events import BatchConsumer, ConsumerConfig
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.observability.tracing import configure_tracing
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.interactive.events import read_event_consumer
from services.interactive.grpc_api import InteractiveServicer
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.service import InteractiveService
from services.interactive.settings import InteractiveSettings
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc

SERVICE_NAME = "interactive"

logger = logging.getLogger(__name__)


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of a SQLite database file (``.run/`` on a fresh clone)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def consumer_config(settings: InteractiveSettings) -> ConsumerConfig:
    """The read-event consumer's configuration from the settings."""
    return ConsumerConfig(
        bootstrap=settings.kafka_bootstrap,
        group_id=settings.read_consumer_group,
        max_batch=settings.read_batch_size,
        max_wait_s=settings.read_batch_wait_seconds,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        lag_interval_s=settings.kafka_lag_interval_seconds,
        manage_topics=settings.kafka_manage_topics,
        topic_partitions=settings.kafka_topic_partitions,
        client_id=f"webook-{SERVICE_NAME}",
    )


class InteractiveRunner(ServiceRunner):
    """The interactive process: starts the read-event consumer once the server listens."""

    def __init__(
        self,
        settings: InteractiveSettings,
        consumer: BatchConsumer | None,
        *,
        registration: Registration | None = None,
        interceptors: Sequence[ServerInterceptorBase] = (),
    ) -> None:
        super().__init__(
            SERVICE_NAME, settings, registration=registration, interceptors=interceptors
        )
        self.consumer = consumer
        if consumer is not None:
            # Stopped before the drain; the pools it writes to close after it.
            self.on_shutdown(consumer.stop)

    async def start(self) -> int:
        """Listen, serve and register; then start consuming."""
        port = await super().start()
        if self.consumer is not None:
            self.consumer.start()
        return port


def build_runner(
    settings: InteractiveSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> InteractiveRunner:
    """The whole interactive service process, not yet started; its shutdown stops the
    consumer and closes every pool.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    """
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    local = (
        LocalCounts(
            redis,
            counts_entries=settings.local_counts_entries,
            flags_entries=settings.local_flags_entries,
            max_age=settings.local_cache_max_age_seconds,
        )
        if settings.local_cache_enabled
        else None
    )
    cache = CountsCache(redis, ttl_seconds=settings.counts_cache_ttl_seconds, local=local)
    sessions = session_factory(engine)
    service = InteractiveService(lambda: SqlUnitOfWork(sessions, cache), cached=cache)
    consumer = (
        read_event_consumer(service, consumer_config(settings))
        if settings.read_consumer_enabled
        else None
    )
    runner = InteractiveRunner(
        settings, consumer, registration=registration, interceptors=interceptors
    )
    runner.add_service(
        interactive_pb2.DESCRIPTOR.services_by_name["InteractiveService"].full_name,
        interactive_pb2_grpc.add_InteractiveServiceServicer_to_server,
        InteractiveServicer(service),
    )

    async def close_redis() -> None:
        # The client does not own a pool it was given, so close the pool explicitly.
        await redis.aclose(close_connection_pool=True)

    # Close hooks run after in-flight calls drained, in reverse order: Redis, then SQL.
    runner.on_close(engine.dispose)
    runner.on_close(close_redis)
    if local is not None:
        # Until the subscription is confirmed, lookups go to Redis; it ends before Redis
        # closes (close hooks run in reverse order).
        local.start()
        runner.on_close(local.aclose)
    return runner


async def serve(settings: InteractiveSettings) -> None:
    """Run the service until SIGTERM or SIGINT."""
    runner = build_runner(settings)
    await runner.serve()


def migrate(settings: InteractiveSettings) -> None:
    """Apply the interactive service's migrations to its database."""
    ensure_sqlite_directory(settings.database_url)
    upgrade(SERVICE_NAME, settings.database_url)
    logger.info("migrations applied")


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m services.interactive", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument(
        "--env-file", type=Path, help="dotenv file with WEBOOK_INTERACTIVE_* settings"
    )
    args = parser.parse_args(argv)
    settings = load_settings(InteractiveSettings, env_file=args.env_file)
    configure_logging(SERVICE_NAME, settings.log_level)
    if args.command == "migrate":
        migrate(settings)
        return
    provider = configure_tracing(
        SERVICE_NAME, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio
    )
    try:
        asyncio.run(serve(settings))
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
