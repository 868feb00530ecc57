"""Composition root of the article service: ``python -m services.article [serve|migrate]``.

Articles live in SQL; published ones are cached in Redis and, when
``PUBLISHED_LOCAL_CACHE_ENTRIES`` is set, in process too (kept coherent by Redis's
invalidation feed, started before the server accepts calls and ended after the drain, before
Redis closes). Author names and popularity come from the user and interactive services;
reads are gathered into one record per window (``event_linger_ms``) and go to the buffered
event producer; publications and withdrawals are written to the
``article_outbox`` table in their transaction and published by the outbox relay, which runs
once the server serves (``kit.outbox``). The command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import (
    RunnerOptions,
    wire_backends,
    wire_clients,
    wire_outbox_relay,
    wire_producer,
)
from kit.grpcx.server import ServiceRunner
from services.article.domain import Popularity, PublishedArticle, PublishedTtlPolicy, tiered_ttl
from services.article.events import ReadBatcher, outbox_topic_specs, topic_specs
from services.article.grpc_api import ArticleServicer
from services.article.peers import RemotePopularity, UserServiceAuthors
from services.article.repository import SqlUnitOfWork, article_outbox
from services.article.repository.cache import (
    FirstPageCache,
    InProcessPublishedArticleCache,
    RedisPublishedArticleCache,
)
from services.article.service import ArticleService, PublishedArticleCache
from services.article.settings import ArticleSettings


def live_ttl_policy(now: Callable[[], ArticleSettings]) -> PublishedTtlPolicy:
    """The reader views' TTL policy (:func:`tiered_ttl`) of the settings in force at each
    cache write (a write follows a miss or a publication: building it each time is cheap)."""

    def ttl(article: PublishedArticle, popularity: Popularity) -> int:
        settings = now()
        return tiered_ttl(
            base_s=settings.published_cache_ttl_seconds,
            popular_s=settings.popular_published_cache_ttl_seconds,
            followers_threshold=settings.popular_author_followers,
            reads_threshold=settings.popular_article_reads,
        )(article, popularity)

    return ttl


def build_runner(settings: ArticleSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The article process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("article", settings, **options)
    backends = wire_backends(runner, settings)
    clients = wire_clients(runner, settings)
    published: PublishedArticleCache
    if settings.published_local_cache_entries:
        local = InProcessPublishedArticleCache(
            backends.redis,
            max_entries=settings.published_local_cache_entries,
            max_age=settings.published_local_cache_max_age_seconds,
            stale_for=settings.published_local_cache_stale_seconds,
        )
        # Until its subscription is confirmed, reads go to Redis.
        runner.start_before_serving(local)
        published = local
    else:
        published = RedisPublishedArticleCache(backends.redis)
    # The reads gather in the batcher: the producer sends a batch at once.
    producer = wire_producer(
        runner, settings, topic_specs(settings.kafka_topic_partitions), linger_ms=0
    )
    # Registered after the producer: stopped before it, handing over the last batch.
    reads = runner.start_before_serving(
        ReadBatcher(producer, window_s=settings.event_linger_ms / 1000)
    )
    outbox = article_outbox()
    wire_outbox_relay(
        runner,
        settings,
        backends.sessions,
        outbox,
        outbox_topic_specs(settings.kafka_topic_partitions),
    )
    now = runner.settings_in_force(settings)
    first_pages = FirstPageCache(
        backends.redis, ttl_seconds=lambda: now().first_page_cache_ttl_seconds
    )
    service = ArticleService(
        lambda: SqlUnitOfWork(backends.sessions, first_pages, outbox),
        published_cache=published,
        authors=UserServiceAuthors(clients, timeout_s=settings.peer_timeout_seconds),
        popularity=RemotePopularity(clients, timeout_s=settings.peer_timeout_seconds),
        ttl_policy=live_ttl_policy(now),
        events=reads,
    )
    runner.mount(ArticleServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("article", ArticleSettings, build_runner))
