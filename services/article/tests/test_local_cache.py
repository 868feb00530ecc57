"""Reader views kept in process memory by two replicas, invalidated over Redis pub/sub.

Two article services ("replicas") share the test database and Redis, each with its own
:class:`~services.article.repository.cache.InProcessPublishedArticleCache`. A replica
serves a hot article from memory; a publish or withdraw through the other replica reaches
it through the announcement; a lost subscription empties its memory and sends reads to
Redis again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from kit.errors import AppError
from kit.redisx import create_redis
from kit.sql import SessionFactory, create_engine, session_factory
from services.article.domain import tiered_ttl
from services.article.errors import Reason
from services.article.repository import SqlUnitOfWork, article_outbox
from services.article.repository.cache import (
    LOCAL_PUBLISHED_CACHE,
    FirstPageCache,
    InProcessPublishedArticleCache,
    encode_published,
    published_key,
)
from services.article.service import ArticleService
from services.article.tests.fakes import FakeAuthors, FakePopularity, RecordedEvents

pytestmark = pytest.mark.integration

ALICE, BOB = 1, 2


def local(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "webook_cache_requests_total", {"cache": LOCAL_PUBLISHED_CACHE, "result": result}
    )
    return value or 0.0


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {seconds} s")


Replica = tuple[ArticleService, InProcessPublishedArticleCache]


@pytest.fixture
async def replicas(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two services on one database and one Redis, each with its own memory cache."""
    async with AsyncExitStack() as stack:
        built: list[Replica] = []
        for _ in range(2):
            engine = create_engine(database_url)
            stack.push_async_callback(engine.dispose)
            redis = create_redis(redis_url)
            stack.push_async_callback(redis.aclose, close_connection_pool=True)
            cache = InProcessPublishedArticleCache(redis)
            cache.start()
            stack.push_async_callback(cache.aclose)
            sessions = session_factory(engine)
            first_pages = FirstPageCache(redis)
            service = ArticleService(
                _units(sessions, first_pages),
                published_cache=cache,
                authors=FakeAuthors({ALICE: "Alice", BOB: "Bob"}),
                popularity=FakePopularity(),
                ttl_policy=tiered_ttl(
                    base_s=600, popular_s=3600, followers_threshold=100, reads_threshold=100
                ),
                events=RecordedEvents(),
            )
            built.append((service, cache))
        for _, cache in built:
            await eventually(functools.partial(_fresh, cache))
        yield built[0], built[1]


def _units(sessions: SessionFactory, first_pages: FirstPageCache) -> Callable[[], SqlUnitOfWork]:
    outbox = article_outbox()
    return lambda: SqlUnitOfWork(sessions, first_pages, outbox)


async def _fresh(cache: InProcessPublishedArticleCache) -> bool:
    return cache.feed.fresh


async def test_a_hot_article_is_served_from_memory_and_a_new_version_reaches_every_replica(
    replicas: tuple[Replica, Replica],
) -> None:
    (writer, _), (reader, _) = replicas
    article_id = await writer.publish(ALICE, 0, "v1", "<p>first</p>")
    assert (await reader.get_published(article_id, BOB)).title == "v1"
    hits_before = local("hit")
    for _ in range(3):
        assert (await reader.get_published(article_id, BOB)).title == "v1"
    assert local("hit") - hits_before == 3

    await writer.publish(ALICE, article_id, "v2", "<p>second</p>")

    async def reader_sees_v2() -> bool:
        return (await reader.get_published(article_id, BOB)).title == "v2"

    await eventually(reader_sees_v2)


async def test_a_withdrawal_reaches_every_replica(replicas: tuple[Replica, Replica]) -> None:
    (writer, _), (reader, _) = replicas
    article_id = await writer.publish(ALICE, 0, "soon gone", "<p>text</p>")
    await reader.get_published(article_id, BOB)
    await reader.get_published(article_id, BOB)

    await writer.withdraw(ALICE, article_id)

    async def reader_refuses() -> bool:
        try:
            await reader.get_published(article_id, BOB)
        except AppError as exc:
            return exc.reason == Reason.NOT_FOUND
        return False

    await eventually(reader_refuses)


async def test_losing_the_subscription_sends_reads_back_to_redis(
    replicas: tuple[Replica, Replica], redis_client: aioredis.Redis
) -> None:
    (writer, _), (reader, reader_cache) = replicas
    article_id = await writer.publish(ALICE, 0, "cached", "<p>text</p>")
    article = await reader.get_published(article_id, BOB)
    assert (await reader.get_published(article_id, BOB)).title == "cached"
    # A change the reader cannot hear about (written without announcement), then its
    # subscription is cut, as if the announcement had been lost with it.
    changed = encode_published(article.with_author_name("Renamed"))
    await redis_client.set(published_key(article_id), changed, ex=600)
    resets = REGISTRY.get_sample_value(
        "webook_cache_invalidation_feed_resets_total", {"feed": LOCAL_PUBLISHED_CACHE}
    )
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]

    async def reset_seen() -> bool:
        now = REGISTRY.get_sample_value(
            "webook_cache_invalidation_feed_resets_total", {"feed": LOCAL_PUBLISHED_CACHE}
        )
        return (now or 0.0) >= (resets or 0.0) + 2

    await eventually(reset_seen)
    assert (await reader.get_published(article_id, BOB)).author_name == "Renamed"
    # Subscribed again, the reader keeps serving what Redis has.
    await eventually(lambda: _fresh(reader_cache))
    assert (await reader.get_published(article_id, BOB)).author_name == "Renamed"
