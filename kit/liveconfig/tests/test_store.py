"""ConfigStore on a real etcd: changes with their records, rollback, copy, diff, conflicts."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from kit.config import Mode
from kit.liveconfig import (
    DELETE,
    ConfigInvalid,
    ConfigStore,
    ConflictError,
    UnknownVersion,
    validate_changes,
)
from kit.liveconfig.schema import service_key_prefix
from kit.liveconfig.tests.demo import DemoSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def env() -> str:
    """An environment of this test only (the shared etcd serves every test)."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


def schema(remote: dict[str, Any]) -> None:
    validate_changes(DemoSettings, DemoSettings(mode=Mode.TEST), {}, remote)


async def test_set_records_who_why_before_and_after(store: ConfigStore, env: str) -> None:
    first = await store.set(env, "demo", {"soft_limit": 5}, who="ada", why="tighter")
    second = await store.set(
        env, "demo", {"hard_limit": 50, "soft_limit": DELETE}, who="bob", why="looser"
    )
    assert (first.version, second.version) == (1, 2)
    assert second.revision > first.revision > 0
    assert await store.get(env, "demo") == ({"hard_limit": 50}, 2)

    history = await store.history(env, "demo")
    assert [r.version for r in history] == [2, 1]
    newest = history[0]
    assert (newest.who, newest.why) == ("bob", "looser")
    assert newest.before == {"soft_limit": 5}
    assert newest.after == {"hard_limit": 50}
    assert newest.revision == second.revision
    assert [r.version for r in await store.history(env, "demo", limit=1)] == [2]


async def test_an_invalid_change_never_reaches_etcd(store: ConfigStore, env: str) -> None:
    with pytest.raises(ConfigInvalid):
        await store.set(env, "demo", {"soft_limit": 0}, who="ada", why="x", validate=schema)
    assert await store.get(env, "demo") == ({}, 0)
    assert await store.history(env, "demo") == []


async def test_rollback_restores_exactly(store: ConfigStore, env: str) -> None:
    await store.set(env, "demo", {"soft_limit": 5, "hard_limit": 9}, who="a", why="1")
    await store.set(env, "demo", {"soft_limit": DELETE, "log_level": "DEBUG"}, who="a", why="2")
    await store.set(env, "demo", {"hard_limit": 70}, who="a", why="3")
    record = await store.rollback(env, "demo", 1, who="ops", why="back to 1", validate=schema)
    assert record.version == 4
    assert record.after == {"soft_limit": 5, "hard_limit": 9}
    assert await store.get(env, "demo") == ({"soft_limit": 5, "hard_limit": 9}, 4)
    with pytest.raises(UnknownVersion):
        await store.rollback(env, "demo", 99, who="ops", why="none")


async def test_diff_then_copy_between_environments(store: ConfigStore, env: str) -> None:
    prod = f"{env}-prod"
    await store.set(env, "demo", {"soft_limit": 5, "hard_limit": 9}, who="a", why="test values")
    await store.set(prod, "demo", {"hard_limit": 30, "log_level": "WARNING"}, who="a", why="p")
    assert await store.diff(env, prod, "demo") == {
        "hard_limit": (9, 30),
        "log_level": (None, "WARNING"),
        "soft_limit": (5, None),
    }
    record = await store.copy(env, prod, "demo", who="ops", why=f"copy of {env}")
    assert (record.environment, record.version) == (prod, 2)
    assert await store.diff(env, prod, "demo") == {}
    assert (await store.get(prod, "demo"))[0] == {"soft_limit": 5, "hard_limit": 9}


async def test_concurrent_sets_both_land(store: ConfigStore, env: str) -> None:
    records = await asyncio.gather(
        *(store.set(env, "demo", {f"k{n}": n}, who=f"op{n}", why="race") for n in range(4))
    )
    assert sorted(r.version for r in records) == [1, 2, 3, 4]
    assert await store.get(env, "demo") == ({f"k{n}": n for n in range(4)}, 4)
    history = await store.history(env, "demo")
    # Each record's "before" is the previous record's "after": no update was lost.
    ordered = sorted(history, key=lambda r: r.version)
    for previous, following in itertools.pairwise(ordered):
        assert following.before == previous.after


async def test_a_write_between_read_and_commit_is_a_conflict(etcd_endpoint: str, env: str) -> None:
    key = f"{service_key_prefix(env, 'demo')}hard_limit".encode()

    def sneak_in(remote: dict[str, Any]) -> None:
        # Another writer changes a key after this change read the settings.
        with grpc.insecure_channel(etcd_endpoint) as channel:
            rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=key, value=b"99"), timeout=5)

    async with ConfigStore.connect([etcd_endpoint], max_attempts=2) as store:
        with pytest.raises(ConflictError):
            await store.set(env, "demo", {"soft_limit": 5}, who="a", why="x", validate=sneak_in)
        assert await store.get(env, "demo") == ({"hard_limit": 99}, 0)
