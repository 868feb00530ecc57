"""Fixtures of the user service's integration tests: migrated databases and a wired service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (emptied before each test, since tests share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from kit.migrations import upgrade_async
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.user.repository import SqlUnitOfWork
from services.user.repository.cache import UserProfileCache
from services.user.service import UserService
from services.user.tests.stack import UserStack


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.integration),
        pytest.param("mysql", marks=[pytest.mark.integration, pytest.mark.mysql]),
    ]
)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file URL, or the session's MariaDB database (sync: ``mysql_url`` runs its own
    event loop, so it cannot be requested from inside an async fixture)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated user database with an empty ``users`` table."""
    await upgrade_async("user", empty_database_url)
    if not empty_database_url.startswith("sqlite"):
        engine = create_engine(empty_database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM users"))
        finally:
            await engine.dispose()
    return empty_database_url


@pytest.fixture
async def user_stack(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[UserStack]:
    """The production wiring (minus gRPC) on the test database and a flushed Redis."""
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = UserProfileCache(redis)
    service = UserService(lambda: SqlUnitOfWork(sessions, cache), bcrypt_cost=4)
    try:
        yield UserStack(service=service, engine=engine, redis=redis)
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
