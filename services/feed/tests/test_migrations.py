"""The feed service's migrations create exactly the schema its models describe."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Connection

from kit.migrations import schema_drift
from kit.sql import create_engine
from services.feed.repository.dao import Base

pytestmark = pytest.mark.integration


async def test_migrations_match_the_models(database_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        return schema_drift(connection, Base.metadata, "feed")

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
