"""Redis clients survive a Redis restart and fail clearly while Redis is down; reads with a
fallback wait milliseconds on a silent Redis; a timeout marks Redis hung only when nothing
answered meanwhile.

Unit tests drive :class:`RedisHealth` alone; integration tests run a Redis of their own,
frozen (SIGSTOP) where they say so.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devstack.infra import ManagedProcess
from kit.cache.store import FAILED, JsonCodec, RedisCache
from kit.cache.tests.outage import eventually, frozen, own_redis, url_of
from kit.redisx import (
    ReadAbandoned,
    RedisHealth,
    RedisState,
    RedisUnavailable,
    create_redis,
    fallback_reads,
    redis_health,
)

_CODEC: JsonCodec[dict[str, Any]] = JsonCodec(
    encode=dict, decode=lambda data: {k: v for k, v in data.items() if k != "v"}
)


@pytest.mark.integration
async def test_first_command_after_a_restart_succeeds(
    redis_url: str, redis_server: ManagedProcess
) -> None:
    client = create_redis(redis_url)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    try:
        assert await client.ping()
        await script(keys=["kit:redisx:test"])
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        redis_server.start()
        # Pooled connections died with the server; the command is retried on a new one
        # (and the script, lost with the restart, is loaded again).
        assert await script(keys=["kit:redisx:test"]) == 1
    finally:
        if not redis_server.alive():
            redis_server.start()
        await client.aclose(close_connection_pool=True)


# --- Reads with a fallback, and what marks Redis hung -----------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _never_answers() -> None:
    raise RedisUnavailable("no answer (fake probe)")


def _fallbacks(client: str, reason: str) -> float:
    labels = {"client": client, "reason": reason}
    return REGISTRY.get_sample_value("webook_redis_read_fallbacks_total", labels) or 0.0


async def _pending_forever() -> str:
    await asyncio.Event().wait()
    return "never"


async def test_a_read_waiting_on_a_silent_redis_is_abandoned_and_the_next_refused() -> None:
    health = RedisHealth("t_silent", probe=_never_answers, probe_interval=0.01, fallback_wait=0.05)
    waited, refused = _fallbacks("t_silent", "waited"), _fallbacks("t_silent", "refused")
    health.awaiting()  # a reply is awaited on some connection, and never comes

    with pytest.raises(ReadAbandoned):
        await health.read(_pending_forever())
    assert health.state is RedisState.HUNG
    assert _fallbacks("t_silent", "waited") - waited == 1
    health.check()  # commands without a fallback still try, with their full timeout
    never_awaited = _pending_forever()
    with pytest.raises(RedisUnavailable):
        await health.read(never_awaited)  # refused at once (and closed, not left pending)
    assert inspect.getcoroutinestate(never_awaited) == inspect.CORO_CLOSED
    assert _fallbacks("t_silent", "refused") - refused == 1

    health.answered()  # any answer: Redis is alive
    assert health.available
    assert await health.read(asyncio.sleep(0, "answer")) == "answer"
    await health.aclose()


async def test_a_read_keeps_waiting_while_redis_answers_other_connections() -> None:
    # The bound is 50 times the gap between replies, so a loaded machine that delays the
    # replying task by a few ticks cannot make a gap look like silence.
    health = RedisHealth("t_busy", probe=_never_answers, fallback_wait=0.5)
    waited = _fallbacks("t_busy", "waited")
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def other_connections() -> None:
        # Replies keep coming on other connections for three bounds and more.
        for _ in range(150):
            health.awaiting()
            await asyncio.sleep(0.01)
            health.answered()
        answer.set_result("late but alive")

    others = asyncio.create_task(other_connections())
    assert await health.read(answer) == "late but alive"
    await others
    assert health.available
    assert _fallbacks("t_busy", "waited") == waited
    await health.aclose()


async def test_a_read_cancelled_by_someone_else_stays_cancelled() -> None:
    health = RedisHealth("t_cancel", probe=_never_answers, fallback_wait=30.0)
    reading = asyncio.create_task(health.read(_pending_forever()))
    await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert health.available


def test_a_timeout_marks_hung_only_without_any_answer_since_the_command_was_sent() -> None:
    clock = _Clock()
    health = RedisHealth("t_trip", probe=_never_answers, clock=clock)
    sent = clock.now
    clock.now += 0.2
    health.awaiting()
    health.answered()  # another connection got its reply after the command was sent
    clock.now += 0.3
    health.timed_out("slow, not frozen", since=sent)
    assert health.available
    health.check()

    sent = clock.now
    clock.now += 0.5  # nothing answered since
    health.timed_out("frozen", since=sent)
    assert health.state is RedisState.HUNG
    with pytest.raises(RedisUnavailable):
        health.check()  # every command refused at once


@pytest.fixture
def frozen_server(tmp_path: Path) -> Iterator[ManagedProcess]:
    with own_redis(tmp_path) as proc:
        yield proc


@pytest.mark.integration
async def test_a_cached_read_in_flight_on_a_frozen_redis_takes_its_fallback(
    frozen_server: ManagedProcess,
) -> None:
    # A generous timeout: the read must come back long before it, through its bound.
    client = create_redis(url_of(frozen_server), timeout=10.0, fallback_wait=0.3, name="t_fz")
    cache = RedisCache(client, name="t_frozen", codec=_CODEC, ttl_seconds=60)
    health = redis_health(client)
    assert health is not None
    waited = _fallbacks("t_fz", "waited")
    try:
        assert await cache.set("k", {"n": 1})
        with frozen(frozen_server):
            started = time.monotonic()
            lookups = await asyncio.gather(*(cache.lookup("k") for _ in range(3)))
            assert lookups == [FAILED] * 3  # the callers' fallback (the database) answers
            assert time.monotonic() - started < 2.0
            assert _fallbacks("t_fz", "waited") - waited == 3
            assert health.state is RedisState.HUNG
            assert await cache.get("k") is None  # refused at once now
            assert not await cache.set("k", {"n": 2}, fill=True)  # a fill: refused too
        await eventually(lambda: health.available, "Redis answers again")
        assert await cache.get("k") == {"n": 1}
    finally:
        await client.aclose(close_connection_pool=True)


@pytest.mark.integration
async def test_a_write_on_a_frozen_redis_keeps_its_full_timeout_then_confirms_the_hang(
    frozen_server: ManagedProcess,
) -> None:
    timeout = 1.0
    client = create_redis(url_of(frozen_server), timeout=timeout, fallback_wait=0.3, name="t_fw")
    health = redis_health(client)
    assert health is not None
    read = fallback_reads(client)
    try:
        assert await client.set("k", "1")
        with frozen(frozen_server):
            with pytest.raises(ReadAbandoned):
                await read(client.get("k"))
            # Hung for reads with a fallback only: a write still tries, and waits its whole
            # timeout (a lower bound: a loaded machine only makes it longer).
            started = time.monotonic()
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await client.set("k", "2")
            assert time.monotonic() - started >= 0.9 * timeout
            with pytest.raises(RedisUnavailable):
                await client.set("k", "3")  # confirmed: now every command is refused
        await eventually(lambda: health.available, "Redis answers again")
        assert await client.get("k") == b"1"
    finally:
        await client.aclose(close_connection_pool=True)


@pytest.mark.integration
async def test_a_timeout_while_redis_answers_other_connections_does_not_short_circuit(
    frozen_server: ManagedProcess,
) -> None:
    client = create_redis(url_of(frozen_server), timeout=0.5, name="t_blocked")
    health = redis_health(client)
    assert health is not None
    stop = asyncio.Event()

    async def pings() -> None:
        while not stop.is_set():
            await client.ping()
            await asyncio.sleep(0.01)

    pinging = asyncio.create_task(pings())
    try:
        # BLPOP holds its connection's reply for 5 s; Redis keeps answering the pings.
        with pytest.raises(RedisTimeoutError):
            await client.blpop(["kit:redisx:empty"], timeout=5)
        assert health.available
        health.check()
    finally:
        stop.set()
        await pinging
        await client.aclose(close_connection_pool=True)
