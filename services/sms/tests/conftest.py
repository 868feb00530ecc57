"""Fixtures of the sms tests: fake vendor servers, migrated databases, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.migrations import upgrade_async
from kit.sql import create_engine
from services.sms.repository.dao import SendRecordNumberRow, SendRecordRow
from services.sms.tests.fakes import FakeAliyun, FakeServer, FakeTencent


@pytest.fixture(scope="session")
def tencent_server() -> Iterator[FakeServer]:
    """The fake Tencent Cloud SMS endpoint for the session."""
    server = FakeServer(FakeTencent())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def aliyun_server() -> Iterator[FakeServer]:
    """The fake Aliyun SMS endpoint for the session."""
    server = FakeServer(FakeAliyun())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tencent(tencent_server: FakeServer) -> FakeTencent:
    """The fake Tencent vendor, reset to healthy with no history."""
    vendor = tencent_server.vendor
    assert isinstance(vendor, FakeTencent)
    vendor.reset()
    return vendor


@pytest.fixture
def aliyun(aliyun_server: FakeServer) -> FakeAliyun:
    """The fake Aliyun vendor, reset to healthy with no history."""
    vendor = aliyun_server.vendor
    assert isinstance(vendor, FakeAliyun)
    vendor.reset()
    return vendor


_migrated: set[str] = set()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file URL, or the session's MariaDB database (synchronous: it may create it)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
async def database_url(sql_url: str) -> AsyncIterator[str]:
    """``sql_url`` migrated to the latest sms schema, with empty tables."""
    if sql_url not in _migrated:
        await upgrade_async("sms", sql_url)
        _migrated.add(sql_url)
    engine = create_engine(sql_url)
    try:
        await _empty(engine)
        yield sql_url
    finally:
        await engine.dispose()


async def _empty(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(SendRecordNumberRow))
        await conn.execute(delete(SendRecordRow))
