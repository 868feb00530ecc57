"""Two scratch databases per test (the migration's source and destination), on SQLite and
on the MariaDB server of ``WEBOOK_TEST_MYSQL_URL``; created empty with the test table and
dropped after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrator import CheckpointStore, Sides
from kit.migrator.tests.support import Pair, metadata
from kit.sql import (
    create_database,
    create_engine,
    database_url,
    drop_database,
    mysql_test_server,
    session_factory,
)


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.integration),
        pytest.param("mysql", marks=[pytest.mark.integration, pytest.mark.mysql]),
    ]
)
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    """A source and a destination database with the test table, empty."""
    created: list[str] = []
    if request.param == "sqlite":
        urls = [f"sqlite+aiosqlite:///{tmp_path / name}.db" for name in ("source", "destination")]
    else:
        prefix = f"webook_migrator_{uuid.uuid4().hex[:10]}"
        urls = []
        for name in ("source", "destination"):
            database = f"{prefix}_{name}"
            await create_database(mysql_test_server(), database)
            created.append(database)
            urls.append(database_url(mysql_test_server(), database))
    engines: list[AsyncEngine] = [create_engine(url) for url in urls]
    try:
        for engine in engines:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        sides = Sides(session_factory(engines[0]), session_factory(engines[1]))
        checkpoints = CheckpointStore(sides.destination)
        await checkpoints.ensure_table()
        yield Pair(request.param, sides, checkpoints)
    finally:
        for engine in engines:
            await engine.dispose()
        for database in created:
            await drop_database(mysql_test_server(), database)
