"""Whole databases on the test MariaDB server: a scratch database exists inside its block
and is gone after it; names that are not plain identifiers never reach a statement."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.sql import create_engine, database_url, drop_database, scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


async def _exists(url: str) -> bool:
    server, _, rest = url.rpartition("/")
    name = rest.split("?")[0]
    engine = create_engine(server + "/")
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": name},
            )
    finally:
        await engine.dispose()
    return bool(found)


async def test_a_scratch_database_lives_for_its_block() -> None:
    async with scratch_database(prefix="webook_kit_test") as url:
        assert "webook_kit_test_" in url
        assert url.endswith("?charset=utf8mb4")
        assert await _exists(url)
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (id INT PRIMARY KEY)"))
        finally:
            await engine.dispose()
    assert not await _exists(url)


@pytest.mark.parametrize("name", ["", "a`b", "x; DROP DATABASE mysql", "a-b", "n" * 65])
async def test_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="database names"):
        database_url("mysql+asyncmy://root@127.0.0.1:3306", name)
    with pytest.raises(ValueError, match="database names"):
        await drop_database("mysql+asyncmy://root@127.0.0.1:3306", name)
