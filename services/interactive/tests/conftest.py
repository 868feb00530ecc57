"""Fixtures of the interactive service's integration tests: migrated databases, a wired service.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (whose interactive tables are emptied before each test, since the
database is shared with other services' tests).
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
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache
from services.interactive.service import InteractiveService
from services.interactive.tests.stack import InteractiveStack

OWN_TABLES = ("interactives", "user_likes", "user_collects")


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
        return f"sqlite+aiosqlite:///{tmp_path / 'interactive.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated interactive database with empty tables."""
    await upgrade_async("interactive", empty_database_url)
    if not empty_database_url.startswith("sqlite"):
        engine = create_engine(empty_database_url)
        try:
            async with engine.begin() as conn:
                for table in OWN_TABLES:
                    await conn.execute(text(f"DELETE FROM {table}"))
        finally:
            await engine.dispose()
    return empty_database_url


@pytest.fixture
async def interactive_stack(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InteractiveStack]:
    """The production wiring (minus gRPC and Kafka) on the test database and a flushed Redis."""
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = CountsCache(redis)
    service = InteractiveService(lambda: SqlUnitOfWork(sessions, cache), cached=cache)
    try:
        yield InteractiveStack(service=service, engine=engine, redis=redis)
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
