"""Session checks while Redis is unreachable: fail-static for sessions known active,
revocations seen meanwhile still applied, the fallback for unknown sessions.

Unit tests drive :class:`SessionRevocations` without the feed over a fake Redis and a
hand-moved clock; integration tests freeze (SIGSTOP) and stop a Redis of their own under two
gateways' revocation stores with the feed (the default wiring).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from devstack.infra import ManagedProcess
from gateway.auth.sessions import KEY_PREFIX, SessionRevocations, SessionStoreUnavailable
from gateway.settings import SessionCheckFallback
from kit.cache.tests.outage import (
    SOCKET_TIMEOUT_S,
    eventually,
    frozen,
    own_redis,
    url_of,
)
from kit.redisx import create_redis


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _FakeRedis:
    """The two commands the store uses without the feed; fails while ``down``."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.down = False

    async def exists(self, key: str) -> int:
        self._fail_if_down()
        return int(key in self.keys)

    async def set(self, key: str, value: object, *, ex: int, nx: bool = False) -> bool:
        self._fail_if_down()
        if nx and key in self.keys:
            return False
        self.keys.add(key)
        return True

    def _fail_if_down(self) -> None:
        if self.down:
            raise RedisConnectionError("Redis is down (fake)")


def _store(
    redis: _FakeRedis,
    clock: _Clock,
    *,
    on_error: SessionCheckFallback = "deny",
    fail_static: float = 300.0,
) -> SessionRevocations:
    return SessionRevocations(
        cast(aioredis.Redis, redis),
        ttl=timedelta(days=1),
        on_error=on_error,
        fail_static=fail_static,
        clock=clock,
    )


async def test_a_session_known_active_stays_valid_for_the_window_only() -> None:
    redis, clock = _FakeRedis(), _Clock()
    sessions = _store(redis, clock, fail_static=300.0)
    assert await sessions.is_active("known")
    redis.down = True

    clock.now += 299.0
    assert await sessions.is_active("known")
    clock.now += 2.0
    assert not await sessions.is_active("known")  # past the window: the fallback (deny)


@pytest.mark.parametrize("on_error", ["deny", "allow"])
async def test_revocations_seen_here_still_apply_during_the_outage(
    on_error: SessionCheckFallback,
) -> None:
    redis, clock = _FakeRedis(), _Clock()
    sessions = _store(redis, clock, on_error=on_error)
    for ssid in ("logged_out_before", "logged_out_during", "rotated"):
        assert await sessions.is_active(ssid)
    await sessions.revoke("logged_out_before")
    redis.keys.add(KEY_PREFIX + "revoked_elsewhere")
    assert not await sessions.is_active("revoked_elsewhere")  # Redis said so: remembered
    redis.down = True

    with pytest.raises(SessionStoreUnavailable):
        await sessions.revoke("logged_out_during")  # not recorded in Redis ...
    assert await sessions.revoke_if_active("rotated") is (on_error == "allow")

    assert not await sessions.is_active("logged_out_before")
    assert not await sessions.is_active("logged_out_during")  # ... refused here all the same
    assert not await sessions.is_active("revoked_elsewhere")
    assert await sessions.is_active("rotated") is (on_error == "deny")


@pytest.mark.parametrize(("on_error", "expected"), [("deny", False), ("allow", True)])
async def test_an_unknown_session_follows_the_fallback(
    on_error: SessionCheckFallback, expected: bool
) -> None:
    redis, clock = _FakeRedis(), _Clock()
    sessions = _store(redis, clock, on_error=on_error)
    redis.down = True

    assert await sessions.is_active("never_seen") is expected


async def test_a_session_started_after_the_last_contact_is_valid_in_the_window() -> None:
    redis, clock = _FakeRedis(), _Clock()
    sessions = _store(redis, clock, fail_static=300.0)
    assert await sessions.is_active("known")  # the last contact with Redis
    redis.down = True
    clock.now += 10.0
    # A login during the outage (its token's iat is now); a token from an hour before.
    assert await sessions.is_active("new", issued_at=time.time())
    assert not await sessions.is_active("old", issued_at=time.time() - 3600)
    clock.now += 300.0  # the window is over for every session
    assert not await sessions.is_active("new", issued_at=time.time())


async def test_without_fail_static_every_check_follows_the_fallback() -> None:
    redis, clock = _FakeRedis(), _Clock()
    sessions = _store(redis, clock, fail_static=0.0)
    assert await sessions.is_active("known")
    redis.down = True

    assert not await sessions.is_active("known")


def _fresh(store: SessionRevocations) -> bool:
    return store.feed is not None and store.feed.fresh


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagedProcess]:
    with own_redis(tmp_path) as proc:
        yield proc


@pytest.fixture
async def gateways(
    server: ManagedProcess,
) -> AsyncIterator[tuple[SessionRevocations, SessionRevocations]]:
    """Two gateways' stores (allow for unknown sessions, to show revocations still bite),
    each with its own client, both subscribed."""
    stores = []
    clients = []
    for _ in range(2):
        client = create_redis(url_of(server), timeout=SOCKET_TIMEOUT_S, name="fail_static")
        clients.append(client)
        store = SessionRevocations(
            client, ttl=timedelta(days=1), on_error="allow", feed=True, fail_static=300.0
        )
        store.start()
        stores.append(store)
    try:
        for store in stores:
            await eventually(functools.partial(_fresh, store), "the revocation feed subscribes")
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.aclose()
        for client in clients:
            await client.aclose(close_connection_pool=True)


@pytest.mark.integration
async def test_frozen_redis_keeps_known_sessions_and_every_revocation_seen(
    server: ManagedProcess, gateways: tuple[SessionRevocations, SessionRevocations]
) -> None:
    here, other = gateways
    for ssid in ("alice", "bob", "carol"):
        assert await here.is_active(ssid)
    await other.revoke("bob")  # a logout through another gateway, announced

    async def bob_refused() -> bool:
        return not await here.is_active("bob")

    await eventually(bob_refused, "the announcement reaches this gateway")

    with frozen(server):
        await eventually(lambda: here.serving_stale, "checks turn fail-static")
        started = time.monotonic()
        assert await here.is_active("alice")
        assert not await here.is_active("bob")
        with pytest.raises(SessionStoreUnavailable):
            await here.revoke("carol")  # a logout here while Redis is frozen
        assert not await here.is_active("carol")
        assert await here.is_active("dave")  # unknown: the configured fallback (allow)
        assert time.monotonic() - started < SOCKET_TIMEOUT_S

    await eventually(lambda: _fresh(here), "the feed is back")
    assert not here.serving_stale
    assert await here.is_active("alice")
    assert not await here.is_active("bob")


@pytest.mark.integration
async def test_stopped_redis_keeps_known_sessions(
    server: ManagedProcess, gateways: tuple[SessionRevocations, SessionRevocations]
) -> None:
    here, _ = gateways
    assert await here.is_active("alice")
    server.stop()
    try:
        # The first check after the stop may find the feed still fresh, or ask Redis and
        # be refused: either way the known session stays valid.
        assert await here.is_active("alice")
        await eventually(lambda: here.serving_stale, "checks turn fail-static")
        assert await here.is_active("alice")
    finally:
        server.start()
    await eventually(lambda: _fresh(here), "the feed is back")
    assert await here.is_active("alice")


@pytest.mark.integration
async def test_a_check_in_flight_when_redis_freezes_goes_fail_static_at_once(
    server: ManagedProcess,
) -> None:
    # No feed (every check asks Redis) and a read bound far below the socket timeout: the
    # check must end through the bound.
    client = create_redis(
        url_of(server), timeout=SOCKET_TIMEOUT_S, fallback_wait=0.3, name="session_in_flight"
    )
    store = SessionRevocations(client, ttl=timedelta(days=1), on_error="deny", fail_static=300.0)
    labels = {"client": "session_in_flight", "reason": "waited"}
    try:
        assert await store.is_active("alice")
        waited = REGISTRY.get_sample_value("webook_redis_read_fallbacks_total", labels) or 0.0
        with frozen(server):
            started = time.monotonic()
            assert await store.is_active("alice")  # known active: valid (fail-static)
            assert not await store.is_active("erin")  # unknown: the fallback (deny)
            assert time.monotonic() - started < 2.0
            assert REGISTRY.get_sample_value("webook_redis_read_fallbacks_total", labels) == (
                waited + 1
            )
    finally:
        await client.aclose(close_connection_pool=True)
