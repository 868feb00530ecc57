"""The profile cache's TTL is a live setting: changed in etcd, the running process uses it at
its next cache write, with nothing rebuilt; an invalid value is refused and never applied.

The real composition root on SQLite, the session's Redis, broker and etcd. Waits are on
conditions with generous deadlines; nothing asserts a duration.
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
from kit.migrations import upgrade_async
from kit.registry.tests.helpers import eventually
from services.user.__main__ import build_runner
from services.user.repository.cache import profile_key
from services.user.settings import UserSettings
from webook.user.v1 import user_pb2, user_pb2_grpc

pytestmark = pytest.mark.integration

DEADLINE_S = 15.0
PASSWORD = "hello#123"


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


def config_valid() -> float:
    return REGISTRY.get_sample_value("webook_config_valid", {"service": "user"}) or 0.0


async def test_a_new_profile_ttl_is_used_without_a_restart(
    tmp_path: Path,
    redis_url: str,
    redis_client: aioredis.Redis,
    kafka_bootstrap: str,
    etcd_endpoint: str,
    store: ConfigStore,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    await upgrade_async("user", database_url)
    environment = f"t-{uuid.uuid4().hex[:8]}"
    settings = UserSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        grpc_port=0,
        metrics_port=-1,
        bcrypt_cost=4,
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

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            email = f"{uuid.uuid4().hex[:8]}@example.com"
            await stub.Signup(user_pb2.SignupRequest(email=email, password=PASSWORD))
            login = await stub.Login(user_pb2.LoginRequest(email=email, password=PASSWORD))
            key = profile_key(login.user.id)

            async def fill() -> int:
                """Drop the cached profile, read it (a miss fills the cache): the TTL written."""
                await redis_client.delete(key)
                await stub.Profile(user_pb2.ProfileRequest(id=login.user.id))
                return int(await redis_client.ttl(key))

            assert 60 < await fill() <= 900  # the default

            await store.set(
                environment, "user", {"profile_cache_ttl_seconds": 30}, who="t", why="shorter"
            )
            await eventually(
                lambda: getattr(live.current, "profile_cache_ttl_seconds", None) == 30,
                DEADLINE_S,
                "the new TTL applied",
            )
            assert 0 < await fill() <= 30

            # Refused by the validation webookctl runs; written straight to etcd, never applied.
            bad = {"profile_cache_ttl_seconds": -5}
            with pytest.raises(ConfigInvalid) as refused:
                validate_changes(UserSettings, settings, {}, bad)
            assert "profile_cache_ttl_seconds" in refused.value.errors
            with pytest.raises(ConfigInvalid):  # restart-only
                validate_changes(UserSettings, settings, {}, {"bcrypt_cost": 12})
            await store.set(environment, "user", bad, who="t", why="mistake")
            await eventually(lambda: config_valid() == 0, DEADLINE_S, "invalid values seen")
            assert 0 < await fill() <= 30  # the last good value stays
    finally:
        await runner.stop()
