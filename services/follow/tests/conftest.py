"""Fixtures of the follow service's tests: a migrated database and the real process wiring.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the follow tables emptied first, since tests share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis

from kit.config import Mode
from kit.migrations import migrated_and_emptied
from services.follow.__main__ import build_runner
from services.follow.repository.dao import Base
from services.follow.settings import FollowSettings
from webook.follow.v1.follow_pb2_grpc import FollowServiceStub

if TYPE_CHECKING:
    from webook.follow.v1.follow_pb2_grpc import FollowServiceAsyncStub


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated follow database with empty follow tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("follow", empty_database_url, Base.metadata)


@pytest.fixture
async def stub(
    database_url: str, redis_url: str, redis_client: aioredis.Redis, kafka_bootstrap: str
) -> AsyncIterator[FollowServiceAsyncStub]:
    """A client of the follow service served by ``build_runner`` on a free port."""
    settings = FollowSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield FollowServiceStub(channel)
    finally:
        await runner.stop()
