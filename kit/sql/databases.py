"""Whole MariaDB/MySQL databases: create and drop them, and scratch ones for tests.

The local stack creates its database when missing; tests and benchmarks each work in a
database of their own, named uniquely and dropped afterwards, on the server
``WEBOOK_TEST_MYSQL_URL`` names (a local MariaDB by default). Database names are checked
before they are put in a statement (identifiers cannot be bound parameters).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

TEST_SERVER_ENV: Final = "WEBOOK_TEST_MYSQL_URL"
DEFAULT_TEST_SERVER: Final = "mysql+asyncmy://root@127.0.0.1:3306"
_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
_CHARSET: Final = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"


def mysql_test_server() -> str:
    """The MariaDB/MySQL server of tests and benchmarks (no database), without a final ``/``."""
    return os.environ.get(TEST_SERVER_ENV, DEFAULT_TEST_SERVER).rstrip("/")


def database_url(server: str, name: str) -> str:
    """The URL of database ``name`` on ``server`` (utf8mb4)."""
    return f"{server.rstrip('/')}/{_checked(name)}?charset=utf8mb4"


async def create_database(server: str, name: str, *, if_missing: bool = False) -> str:
    """Create database ``name`` on ``server`` (utf8mb4); its URL."""
    exists = "IF NOT EXISTS " if if_missing else ""
    await _run(server, f"CREATE DATABASE {exists}`{_checked(name)}` {_CHARSET}")
    return database_url(server, name)


async def drop_database(server: str, name: str) -> None:
    """Drop database ``name`` on ``server`` if it exists."""
    await _run(server, f"DROP DATABASE IF EXISTS `{_checked(name)}`")


@asynccontextmanager
async def scratch_database(
    server: str | None = None, *, prefix: str = "webook_scratch"
) -> AsyncIterator[str]:
    """A new database named ``<prefix>_<random>`` on ``server`` (the test server by
    default), dropped on exit; yields its URL."""
    where = server if server is not None else mysql_test_server()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = await create_database(where, name)
    try:
        yield url
    finally:
        await drop_database(where, name)


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"database names are 1-64 letters, digits or '_', not {name!r}")
    return name


async def _run(server: str, statement: str) -> None:
    engine = create_async_engine(server.rstrip("/") + "/", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()
