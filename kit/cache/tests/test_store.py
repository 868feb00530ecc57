"""kit.cache.store against a real Redis, and against a Redis that is down (a closed port).

Up: values round-trip with their TTL, under keys and hash fields; a payload of another
version is a miss and a garbled one an error and a miss, never an exception. Down: every
read is a miss counted as an error, every write is logged and counted, nothing raises.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from kit.cache.store import FAILED, CacheGuard, JsonCodec, RedisCache

pytestmark = pytest.mark.integration

NAME = "kit_store_test"
CODEC = JsonCodec[tuple[int, str]](
    encode=lambda value: {"n": value[0], "s": value[1]},
    decode=lambda data: (int(data["n"]), str(data["s"])),
    version=2,
)


def requests(result: str) -> float:
    """``webook_cache_requests_total`` of the test cache for ``result``."""
    value = REGISTRY.get_sample_value(
        "webook_cache_requests_total", {"cache": NAME, "result": result}
    )
    return value or 0.0


def write_errors(op: str) -> float:
    """``webook_cache_write_errors_total`` of the test cache for ``op``."""
    value = REGISTRY.get_sample_value("webook_cache_write_errors_total", {"cache": NAME, "op": op})
    return value or 0.0


def counts() -> dict[str, float]:
    return {result: requests(result) for result in ("hit", "miss", "error")}


def delta(before: dict[str, float]) -> dict[str, float]:
    return {result: requests(result) - value for result, value in before.items()}


@pytest.fixture
def cache(redis_client: aioredis.Redis) -> RedisCache[tuple[int, str]]:
    return RedisCache(redis_client, name=NAME, codec=CODEC, ttl_seconds=300)


async def test_values_round_trip_with_their_ttl(
    cache: RedisCache[tuple[int, str]], redis_client: aioredis.Redis
) -> None:
    before = counts()
    assert await cache.get("k:1") is None
    assert await cache.set("k:1", (1, "één"))
    assert await cache.get("k:1") == (1, "één")
    assert await redis_client.ttl("k:1") in range(290, 301)
    assert await cache.set("k:2", (2, "b"), ttl_seconds=30)
    assert await redis_client.ttl("k:2") in range(20, 31)
    assert delta(before) == {"hit": 1, "miss": 1, "error": 0}

    assert await cache.set_many([("k:3", (3, "c")), ("k:4", (4, "d"))])
    assert await cache.get_many(["k:3", "k:0", "k:4"]) == [(3, "c"), None, (4, "d")]
    assert await redis_client.ttl("k:4") in range(290, 301)

    assert await cache.delete(["k:1", "k:3"])
    assert await cache.get_many(["k:1", "k:3", "k:4"]) == [None, None, (4, "d")]


async def test_hash_fields_share_the_hash_and_its_ttl(
    cache: RedisCache[tuple[int, str]], redis_client: aioredis.Redis
) -> None:
    assert await cache.set("h", (1, "a"), field="x", ttl_seconds=60)
    assert await cache.set("h", (2, "b"), field="y", ttl_seconds=60)
    assert await cache.get("h", field="x") == (1, "a")
    assert await cache.get("h", field="y") == (2, "b")
    assert await cache.get("h", field="z") is None
    assert await redis_client.ttl("h") in range(50, 61)
    assert await cache.delete(["h"])
    assert await cache.get("h", field="x") is None


async def test_other_versions_are_misses_and_garbage_is_an_error(
    cache: RedisCache[tuple[int, str]], redis_client: aioredis.Redis
) -> None:
    await redis_client.set("old", '{"v":1,"n":1,"s":"a"}')
    await redis_client.set("unversioned", '{"n":1,"s":"a"}')
    await redis_client.set("not-json", "{")
    await redis_client.set("not-an-object", "[1, 2]")
    await redis_client.set("wrong-shape", '{"v":2,"n":"x"}')
    before = counts()
    assert await cache.get("old") is None
    assert await cache.get("unversioned") is None
    assert delta(before) == {"hit": 0, "miss": 2, "error": 0}
    before = counts()
    for key in ("not-json", "not-an-object", "wrong-shape"):
        assert await cache.get(key) is None
    assert delta(before) == {"hit": 0, "miss": 0, "error": 3}
    assert CODEC.loads(CODEC.dumps((5, "e"))) == (5, "e")


@pytest.fixture
async def down_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No retries: each refused connection fails at once (redis-py retries with back-off).
    client = aioredis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


async def test_a_redis_that_is_down_reads_as_misses_and_writes_are_logged(
    down_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(down_redis, name=NAME, codec=CODEC, ttl_seconds=60)
    before = counts()
    assert await cache.get("k") is None
    assert await cache.lookup("k") is FAILED
    assert await cache.get("h", field="f") is None
    assert await cache.get_many(["a", "b", "c"]) == [None, None, None]
    assert delta(before) == {"hit": 0, "miss": 0, "error": 6}

    sets, deletes = write_errors("set"), write_errors("delete")
    with caplog.at_level(logging.WARNING, logger="kit.cache.store"):
        assert not await cache.set("k", (1, "a"))
        assert not await cache.set("h", (1, "a"), field="f")
        assert not await cache.set_many([("a", (1, "a")), ("b", (2, "b"))])
        assert not await cache.delete(["k"])
    assert (write_errors("set") - sets, write_errors("delete") - deletes) == (3, 1)
    failures = [r for r in caplog.records if r.getMessage() == "cache write failed"]
    assert len(failures) == 4
    assert {getattr(r, "cache", None) for r in failures} == {NAME}
    # Nothing to write is not a failure.
    assert await cache.set_many([])
    assert await cache.delete([])


async def test_the_guard_runs_custom_layouts(
    down_redis: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    guard = CacheGuard(NAME)
    assert await guard.read(redis_client.hgetall("nothing")) == {}
    assert await guard.write("hset", redis_client.hset("s", mapping={"a": 1}))
    answer: Any = await guard.read(redis_client.hgetall("s"))
    assert answer == {b"a": b"1"}
    before = counts()
    assert await guard.read(down_redis.hgetall("s"), lookups=2) is FAILED
    assert delta(before) == {"hit": 0, "miss": 0, "error": 2}
    failed = write_errors("hset")
    assert not await guard.write("hset", down_redis.hset("s", mapping={"a": 1}), key="s")
    assert write_errors("hset") == failed + 1
