"""Fixtures of the comment service's tests: a migrated database and the real process wiring.

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the comment tables emptied first, since tests share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis

from clients.tests.articles import stand_in_articles
from kit.config import Mode
from kit.migrations import migrated_and_emptied
from services.comment.__main__ import build_runner
from services.comment.repository.dao import Base
from services.comment.settings import CommentSettings
from webook.comment.v1.comment_pb2_grpc import CommentServiceStub

if TYPE_CHECKING:
    from webook.comment.v1.comment_pb2_grpc import CommentServiceAsyncStub


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated comment database with empty comment tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("comment", empty_database_url, Base.metadata)


@pytest.fixture
async def stub(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[CommentServiceAsyncStub]:
    """A client of the comment service served by ``build_runner`` on a free port, every
    article published (a stand-in article service)."""
    settings = CommentSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
    )
    async with stand_in_articles(lambda _: True) as articles:
        runner = build_runner(settings.model_copy(update={"peers": {"article": articles}}))
        port = await runner.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield CommentServiceStub(channel)
        finally:
            await runner.stop()
