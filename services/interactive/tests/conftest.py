"""Fixtures of the interactive service's integration tests: migrated databases, a wired service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (whose interactive tables are emptied before each test, since the
database is shared with other services' tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from clients.tests.articles import FakeTargets
from kit.migrations import migrated_and_emptied
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache
from services.interactive.repository.dao import Base
from services.interactive.service import InteractiveService
from services.interactive.tests.stack import InteractiveStack, started_local


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated interactive database with empty interactive tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("interactive", empty_database_url, Base.metadata)


@pytest.fixture
async def interactive_stack(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InteractiveStack]:
    """The production wiring (minus gRPC and Kafka) on the test database and a flushed Redis,
    in-process cache included (its feed subscribed and fresh)."""
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    local = await started_local(redis)
    cache = CountsCache(redis, local=local)
    service = InteractiveService(
        lambda: SqlUnitOfWork(sessions, cache), targets=FakeTargets(), cached=cache
    )
    try:
        yield InteractiveStack(
            service=service, engine=engine, redis=redis, cache=cache, local=local
        )
    finally:
        await local.aclose()
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
