"""Composition root of the article service: ``python -m services.article [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with
:func:`build_runner` and runs it until SIGTERM/SIGINT. ``migrate`` applies the Alembic
migrations to ``WEBOOK_ARTICLE_DATABASE_URL`` and exits. Settings come from the environment
(prefix ``WEBOOK_ARTICLE_``) and optionally ``--env-file``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kit.events import EventProducer, ProducerConfig
from kit.grpcx.cli import ensure_sqlite_directory, run_service
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import ProducingServiceRunner, Registration
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.article.domain import tiered_ttl
from services.article.events import KafkaArticleEvents, topic_specs
from services.article.grpc_api import ArticleServicer
from services.article.peers import RemotePopularity, UserServiceAuthors
from services.article.repository import SqlUnitOfWork
from services.article.repository.cache import (
    FirstPageCache,
    InProcessPublishedArticleCache,
    RedisPublishedArticleCache,
)
from services.article.service import ArticleService, PublishedArticleCache
from services.article.settings import ArticleSettings
from webook.article.v1 import article_pb2, article_pb2_grpc

SERVICE_NAME = "article"

logger = logging.getLogger(__name__)


def build_runner(
    settings: ArticleSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> ProducingServiceRunner[EventProducer]:
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
            linger_ms=settings.event_linger_ms,
        )
    )
    published_cache: PublishedArticleCache
    local_cache: InProcessPublishedArticleCache | None = None
    if settings.published_local_cache_entries:
        local_cache = InProcessPublishedArticleCache(
            redis,
            max_entries=settings.published_local_cache_entries,
            max_age=settings.published_local_cache_max_age_seconds,
        )
        published_cache = local_cache
    else:
        published_cache = RedisPublishedArticleCache(redis)
    service = ArticleService(
        lambda: SqlUnitOfWork(sessions, first_pages),
        published_cache=published_cache,
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
    runner = ProducingServiceRunner(
        SERVICE_NAME, settings, producer, registration=registration, interceptors=interceptors
    )
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
    if local_cache is not None:
        # Until the subscription is confirmed, reads go to Redis; it ends before Redis
        # closes (close hooks run in reverse order).
        local_cache.start()
        runner.on_close(local_cache.aclose)
    runner.on_close(clients.close)
    runner.on_close(producer.stop)
    return runner


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``serve`` (default) or ``migrate`` (see :mod:`kit.grpcx.cli`)."""
    run_service(SERVICE_NAME, ArticleSettings, build_runner, argv)


if __name__ == "__main__":
    main()
