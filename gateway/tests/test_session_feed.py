"""Session checks from memory, kept exact by Redis pub/sub, across two gateway processes.

Two gateway apps (two "replicas") share the session's real Redis. Each answers session
checks from its own memory once Redis said the session is live; a logout through one
announces the revocation in the same transaction that records it, and the other refuses
the tokens as soon as the announcement arrives. When a replica loses its subscription, it
empties its cache and asks Redis on every check until the subscription is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.wechat_emulator import WechatEmulator
from gateway.app import create_app
from gateway.auth.sessions import KEY_PREFIX, REVOKED_CHANNEL, SessionRevocations
from gateway.auth.tokens import TokenType
from gateway.settings import GatewaySettings
from gateway.tests.conftest import (
    bearer,
    client_for,
    login,
    signup,
    wechat_transport,
)
from kit.cache.invalidation import InvalidationFeed

pytestmark = pytest.mark.integration


async def eventually(condition: Callable[[], Any], seconds: float = 30.0) -> None:
    """Poll ``condition`` (sync or async) every 10 ms until true; fail after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {seconds} s")


def feed_resets() -> float:
    """How often the gateways' revocation caches were emptied for a lost subscription."""
    value = REGISTRY.get_sample_value(
        "webook_cache_invalidation_feed_resets_total", {"feed": "gateway_sessions"}
    )
    return value or 0.0


def feed_of(application: FastAPI) -> InvalidationFeed:
    feed = application.state.runtime.sessions.feed
    assert isinstance(feed, InvalidationFeed)
    return feed


@pytest.fixture
async def replicas(
    settings: GatewaySettings, redis_client: aioredis.Redis, wechat: WechatEmulator
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Two started gateways on one Redis, both subscribed to revocations."""
    first = create_app(settings, wechat_transport=wechat_transport(wechat))
    second = create_app(settings, wechat_transport=wechat_transport(wechat))
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        await eventually(lambda: feed_of(first).fresh and feed_of(second).fresh)
        yield first, second


def session_of(application: FastAPI, http: httpx.AsyncClient, token: str) -> str:
    """The session id in ``token`` (as the gateway verifies it for ``http``'s User-Agent)."""
    claims = application.state.runtime.tokens.verify(
        token, TokenType.ACCESS, http.headers["user-agent"]
    )
    return str(claims.ssid)


async def profile_status(http: httpx.AsyncClient, token: str) -> int:
    return (await http.get("/users/profile", headers=bearer(token))).status_code


async def test_a_logout_through_one_gateway_is_refused_on_the_other(
    replicas: tuple[FastAPI, FastAPI], redis_client: aioredis.Redis
) -> None:
    first, second = replicas
    async with client_for(first) as a, client_for(second) as b:
        await signup(a, "carol@example.com")
        tokens = await login(a, "carol@example.com")
        assert await profile_status(b, tokens.access) == 200
        # B now answers from memory: a revocation written behind its back (no
        # announcement, which our code never does) goes unnoticed ...
        ssid = session_of(first, a, tokens.access)
        await redis_client.set(KEY_PREFIX + ssid, 1)
        assert await profile_status(b, tokens.access) == 200
        await redis_client.delete(KEY_PREFIX + ssid)

        # ... while a logout through A is announced, and B refuses both tokens.
        logout = await a.post("/users/logout", headers=bearer(tokens.access))
        assert logout.json()["code"] == 0
        assert await profile_status(a, tokens.access) == 401
        await eventually(lambda: _refused(b, tokens.access))
        refresh = await b.post("/users/refresh_token", headers=bearer(tokens.refresh))
        assert refresh.status_code == 401


async def _refused(http: httpx.AsyncClient, token: str) -> bool:
    return await profile_status(http, token) == 401


async def test_losing_the_subscription_falls_back_to_asking_redis(
    replicas: tuple[FastAPI, FastAPI], redis_client: aioredis.Redis
) -> None:
    first, second = replicas
    async with client_for(first) as a, client_for(second) as b:
        await signup(a, "dave@example.com")
        tokens = await login(a, "dave@example.com")
        assert await profile_status(b, tokens.access) == 200
        ssid = session_of(first, a, tokens.access)
        # A revocation B cannot hear about: written without announcement, then B's
        # subscribed connection is cut, as if the message had been lost with it.
        await redis_client.set(KEY_PREFIX + ssid, 1)
        resets_before = feed_resets()
        # Both replicas' subscribed connections are cut.
        await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        # Each notices (an error, or redis-py's own reconnect and new subscription) and
        # empties its cache: in doubt, B asks Redis, and the session is refused.
        await eventually(lambda: feed_resets() >= resets_before + 2)
        assert await profile_status(b, tokens.access) == 401
        # Subscribed again, B still refuses (its cache was emptied, not kept).
        await eventually(lambda: feed_of(second).fresh)
        assert await profile_status(b, tokens.access) == 401


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_stalled_subscription_stops_the_cache_within_its_lag(
    redis_client: aioredis.Redis,
) -> None:
    clock = _Clock()
    sessions = SessionRevocations(
        redis_client, ttl=timedelta(days=1), on_error="deny", feed=True, clock=clock
    )
    sessions.start()
    try:
        feed = sessions.feed
        assert feed is not None
        await eventually(lambda: feed.fresh)
        assert await sessions.is_active("stalled")
        await redis_client.set(KEY_PREFIX + "stalled", 1)
        assert await sessions.is_active("stalled")  # from memory
        # No ping answered for longer than the lag (the clock moves, the feed does not
        # get to ping): the cache is not used any more.
        clock.now += 1.5
        assert not feed.fresh
        assert not await sessions.is_active("stalled")
    finally:
        await sessions.aclose()


async def test_revocations_are_recorded_and_announced_together(
    redis_client: aioredis.Redis,
) -> None:
    sessions = SessionRevocations(redis_client, ttl=timedelta(days=1), on_error="deny", feed=True)
    listener = redis_client.pubsub()
    await listener.subscribe(REVOKED_CHANNEL)
    try:
        await sessions.revoke("s-logout")
        assert await sessions.revoke_if_active("s-rotate")
        assert not await sessions.revoke_if_active("s-rotate")
        announced: list[bytes] = []
        # get_message answers None for the subscription's confirmation too: bounded polling.
        for _ in range(50):
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                announced.append(message["data"])
            if len(announced) == 3:
                break
        assert announced == [b"s-logout", b"s-rotate", b"s-rotate"]
        assert await redis_client.exists(KEY_PREFIX + "s-logout", KEY_PREFIX + "s-rotate") == 2
        assert 0 < await redis_client.ttl(KEY_PREFIX + "s-logout") <= 86_400
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped


async def test_without_the_feed_every_check_asks_redis(redis_client: aioredis.Redis) -> None:
    sessions = SessionRevocations(redis_client, ttl=timedelta(days=1), on_error="deny")
    sessions.start()
    assert sessions.feed is None
    assert await sessions.is_active("plain")
    await redis_client.set(KEY_PREFIX + "plain", 1)
    assert not await sessions.is_active("plain")
    await sessions.aclose()
