"""Fixtures of the article service's integration tests: migrated databases and a wired service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (whose article tables are emptied before each test, since the
database is shared with other services' tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from kit.migrations import migrated_and_emptied
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.article.domain import tiered_ttl
from services.article.repository import SqlUnitOfWork, article_outbox
from services.article.repository.cache import FirstPageCache, RedisPublishedArticleCache
from services.article.repository.dao import Base
from services.article.service import ArticleService
from services.article.tests.fakes import FakeAuthors, FakePopularity, RecordedEvents
from services.article.tests.stack import ArticleStack

BASE_TTL, POPULAR_TTL = 600, 3600


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated article database with empty article tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("article", empty_database_url, Base.metadata)


@pytest.fixture
async def article_stack(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[ArticleStack]:
    """The production storage wiring on the test database and a flushed Redis; fakes for
    the other services and the broker."""
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    first_pages = FirstPageCache(redis)
    outbox = article_outbox()
    authors, popularity, events = (
        FakeAuthors({1: "Alice", 2: "Bob"}),
        FakePopularity(),
        RecordedEvents(),
    )
    service = ArticleService(
        lambda: SqlUnitOfWork(sessions, first_pages, outbox),
        published_cache=RedisPublishedArticleCache(redis),
        authors=authors,
        popularity=popularity,
        ttl_policy=tiered_ttl(
            base_s=BASE_TTL, popular_s=POPULAR_TTL, followers_threshold=100, reads_threshold=100
        ),
        events=events,
    )
    try:
        yield ArticleStack(service, engine, redis, authors, popularity, events)
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
