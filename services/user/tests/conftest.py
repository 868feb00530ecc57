"""Fixtures of the user service's integration tests: migrated databases and a wired service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (emptied before each test, since tests share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from kit.migrations import migrated_and_emptied
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.user.repository import SqlUnitOfWork, user_outbox
from services.user.repository.cache import UserProfileCache
from services.user.repository.dao import Base
from services.user.service import UserService
from services.user.tests.stack import UserStack


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated user database with empty user tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("user", empty_database_url, Base.metadata)


@pytest.fixture
async def user_stack(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[UserStack]:
    """The production wiring (minus gRPC) on the test database and a flushed Redis."""
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = UserProfileCache(redis)
    outbox = user_outbox()
    service = UserService(lambda: SqlUnitOfWork(sessions, cache, outbox), bcrypt_cost=4)
    try:
        yield UserStack(service=service, engine=engine, redis=redis)
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
