"""The counts cache's TTL is a live setting: changed in etcd, the running process uses it at
its next cache write, with nothing rebuilt; an invalid value is refused and never applied.

The real composition root on SQLite, the session's Redis and etcd. Waits are on conditions
with generous deadlines; nothing asserts a duration.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from kit.config import Mode
from kit.liveconfig import ConfigInvalid, ConfigStore, validate_changes
from kit.migrations import migrated_and_emptied
from kit.registry.tests.helpers import eventually
from services.follow.__main__ import build_runner
from services.follow.repository.cache import stats_key
from services.follow.repository.dao import Base
from services.follow.settings import FollowSettings
from webook.follow.v1 import follow_pb2, follow_pb2_grpc

pytestmark = pytest.mark.integration

DEADLINE_S = 15.0
UID = 4242


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


def config_valid() -> float:
    return REGISTRY.get_sample_value("webook_config_valid", {"service": "follow"}) or 0.0


async def test_a_new_cache_ttl_is_used_without_a_restart(
    tmp_path: Path,
    redis_url: str,
    redis_client: aioredis.Redis,
    etcd_endpoint: str,
    store: ConfigStore,
) -> None:
    database_url = await migrated_and_emptied(
        "follow", f"sqlite+aiosqlite:///{tmp_path / 'follow.db'}", Base.metadata
    )
    environment = f"t-{uuid.uuid4().hex[:8]}"
    settings = FollowSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=f"/{environment}/services",
        config_environment=environment,
        config_cache_dir=tmp_path / "config-cache",
    )
    runner = build_runner(settings)
    port = await runner.start()
    live = runner.live
    assert live is not None
    key = stats_key(UID)

    async def fill() -> int:
        """Drop the cached counts, read them (a miss fills the cache): the TTL written."""
        await redis_client.delete(key)
        await stub.GetFollowStatic(follow_pb2.GetFollowStaticRequest(uid=UID))
        return int(await redis_client.ttl(key))

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = follow_pb2_grpc.FollowServiceStub(channel)
            assert 60 < await fill() <= 600  # the default

            await store.set(environment, "follow", {"stats_cache_ttl_seconds": 30}, who="t", why="")
            await eventually(
                lambda: getattr(live.current, "stats_cache_ttl_seconds", None) == 30,
                DEADLINE_S,
                "the new TTL applied",
            )
            assert 0 < await fill() <= 30

            # Refused by the validation webookctl runs; written straight to etcd, never applied.
            bad = {"stats_cache_ttl_seconds": 0}
            with pytest.raises(ConfigInvalid) as refused:
                validate_changes(FollowSettings, settings, {}, bad)
            assert "stats_cache_ttl_seconds" in refused.value.errors
            await store.set(environment, "follow", bad, who="t", why="mistake")
            await eventually(lambda: config_valid() == 0, DEADLINE_S, "invalid values seen")
            assert 0 < await fill() <= 30  # the last good value stays
    finally:
        await runner.stop()
