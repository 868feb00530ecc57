"""Composition root of the article service: ``python -m services.article [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT. ``migrate`` applies the Alembic
migrations to ``WEBOOK_ARTICLE_DATABASE_URL`` and exits. Settings come from the environment
(prefix ``WEBOOK_ARTICLE_``) and optionally ``--env-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from kit.config import load_settings
from kit.events import EventProducer, ProducerConfig
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.observability.tracing import configure_tracing
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.article.domain import tiered_ttl
from services.article.events import KafkaArticleEvents, topic_specs
from services.article.grpc_api import ArticleServicer
from services.article.peers import RemotePopularity, UserServiceAuthors
from services.article.repository import SqlUnitOfWork
from services.article.repository.cache import FirstPageCache, RedisPublishedArticleCache
from services.article.service import ArticleService
from services.article.settings import ArticleSettings
from webook.article.v1 import article_pb2, article_pb2_grpc

SERVICE_NAME = "article"

logger = logging.getLogger(__name__)


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of a SQLite database file (``.run/`` on a fresh clone)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


class ArticleRunner(ServiceRunner):
    """The article process: starts the event producer before it accepts calls."""

    def __init__(
        self,
        settings: ArticleSettings,
        producer: EventProducer,
        *,
        registration: Registration | None = None,
        interceptors: Sequence[ServerInterceptorBase] = (),
    ) -> None:
        super().__init__(
            SERVICE_NAME, settings, registration=registration, interceptors=interceptors
        )
        self.producer = producer

    async def start(self) -> int:
        """Start the producer, then listen, serve and register."""
        self.producer.start()
        return await super().start()


def build_runner(
    settings: ArticleSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> ArticleRunner:
    """The whole article service process, not yet started; its shutdown closes every pool.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    """
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    sessions = session_factory(engine)
    first_pages = FirstPageCache(redis, ttl_seconds=settings.first_page_cache_ttl_seconds)
    clients = ServiceClients.from_settings(settings)
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
    service = ArticleService(
        lambda: SqlUnitOfWork(sessions, first_pages),
        published_cache=RedisPublishedArticleCache(redis),
        authors=UserServiceAuthors(clients, timeout_s=settings.peer_timeout_seconds),
        popularity=RemotePopularity(clients, timeout_s=settings.peer_timeout_seconds),
        ttl_policy=tiered_ttl(
            base_s=settings.published_cache_ttl_seconds,
            popular_s=settings.popular_published_cache_ttl_seconds,
            followers_threshold=settings.popular_author_followers,
            reads_threshold=settings.popular_article_reads,
        ),
        events=KafkaArticleEvents(producer),
    )
    runner = ArticleRunner(settings, producer, registration=registration, interceptors=interceptors)
    runner.add_service(
        article_pb2.DESCRIPTOR.services_by_name["ArticleService"].full_name,
        article_pb2_grpc.add_ArticleServiceServicer_to_server,
        ArticleServicer(service),
    )

    async def close_redis() -> None:
        # The client does not own a pool it was given, so close the pool explicitly.
        await redis.aclose(close_connection_pool=True)

    # Close hooks run after in-flight calls drained, in reverse order: the producer flushes
    # what those calls emitted, then the clients, Redis and SQL pools close.
    runner.on_close(engine.dispose)
    runner.on_close(close_redis)
    runner.on_close(clients.close)
    runner.on_close(producer.stop)
    return runner


async def serve(settings: ArticleSettings) -> None:
    """Run the service until SIGTERM or SIGINT."""
    runner = build_runner(settings)
    await runner.serve()


def migrate(settings: ArticleSettings) -> None:
    """Apply the article service's migrations to its database."""
    ensure_sqlite_directory(settings.database_url)
    upgrade(SERVICE_NAME, settings.database_url)
    logger.info("migrations applied")


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m services.article", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument("--env-file", type=Path, help="dotenv file with WEBOOK_ARTICLE_* settings")
    args = parser.parse_args(argv)
    settings = load_settings(ArticleSettings, env_file=args.env_file)
    configure_logging(SERVICE_NAME, settings.log_level)
    if args.command == "migrate":
        migrate(settings)
        return
    provider = configure_tracing(SERVICE_NAME, settings.otlp_endpoint)
    try:
        asyncio.run(serve(settings))
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
