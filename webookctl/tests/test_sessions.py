"""``sessions revoke`` on the session's real Redis, judged by the gateway's own session check."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from gateway.auth.sessions import (
    KEY_PREFIX,
    REVOKED_CHANNEL,
    USER_KEY_PREFIX,
    SessionRevocations,
)
from webookctl.tests.run import run

pytestmark = pytest.mark.integration

SEVEN_DAYS_S = 7 * 24 * 3600


async def _announcements(pubsub: aioredis.client.PubSub, count: int) -> list[str]:
    """The next ``count`` session ids announced on the revocation channel."""
    seen: list[str] = []
    async with asyncio.timeout(30):
        while len(seen) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                seen.append(message["data"].decode())
    return seen


async def test_revoked_sessions_are_refused_by_the_gateways_check(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(REVOKED_CHANNEL)
    try:
        result = await run(
            "--redis-url",
            redis_url,
            "--json",
            "sessions",
            "revoke",
            "--session",
            "ssid-a",
            "--session",
            "ssid-b",
        )
        assert result.status == 0, result.err
        assert result.json() == {"revoked": ["ssid-a", "ssid-b"], "ttl_seconds": SEVEN_DAYS_S}
        # Every gateway process hears of it, as after a logout.
        assert await _announcements(pubsub, 2) == ["ssid-a", "ssid-b"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped
    check = SessionRevocations(redis_client, ttl=timedelta(days=7), on_error="allow")
    assert not await check.is_active("ssid-a")
    assert not await check.is_active("ssid-b")
    assert await check.is_active("ssid-c")
    ttl = await redis_client.ttl(KEY_PREFIX + "ssid-a")
    assert SEVEN_DAYS_S - 60 < ttl <= SEVEN_DAYS_S


async def test_human_output_and_a_chosen_lifetime(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    result = await run(
        "sessions", "revoke", "--session", "ssid-x", "--ttl-days", "1", "--redis-url", redis_url
    )
    assert result.status == 0, result.err
    assert result.out == "revoked session ssid-x (kept 1 d 0 h)\n"
    assert 86400 - 60 < await redis_client.ttl(KEY_PREFIX + "ssid-x") <= 86400


async def test_by_user_refuses_every_earlier_token_of_that_user_only(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(REVOKED_CHANNEL)
    try:
        result = await run("--redis-url", redis_url, "--json", "sessions", "revoke", "--user", "42")
        assert result.status == 0, result.err
        answer = result.json()
        assert answer["user"] == 42
        assert answer["ttl_seconds"] == SEVEN_DAYS_S
        before = answer["revoked_before"]
        # Announced as a logout is, so every gateway's cache of check answers hears of it.
        assert await _announcements(pubsub, 1) == [f"user:42:{before!r}"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped
    check = SessionRevocations(redis_client, ttl=timedelta(days=7), on_error="allow")
    issued = int(before) - 60
    assert not await check.is_active("ssid-old", issued_at=issued, uid=42)
    assert await check.is_active("ssid-new", issued_at=int(before) + 1, uid=42)
    assert await check.is_active("ssid-other", issued_at=issued, uid=43)
    ttl = await redis_client.ttl(f"{USER_KEY_PREFIX}42")
    assert SEVEN_DAYS_S - 60 < ttl <= SEVEN_DAYS_S


async def test_by_user_human_output_and_a_bad_id(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    result = await run("--redis-url", redis_url, "sessions", "revoke", "--user", "7")
    assert result.status == 0, result.err
    assert result.out.startswith("revoked every session of user 7 issued up to ")
    refused = await run("--redis-url", redis_url, "sessions", "revoke", "--user", "0")
    assert refused.status == 2
    assert await redis_client.exists(f"{USER_KEY_PREFIX}0") == 0


async def test_a_refused_login_fails_in_one_line(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    wrong = f"redis://nobody:wrong@{parts.hostname}:{parts.port}{parts.path}"
    result = await run("--redis-url", wrong, "sessions", "revoke", "--session", "s")
    assert result.status == 1
    assert result.err.startswith("webookctl: session store redis://127.0.0.1:")
    assert "wrong" not in result.err
    assert result.err.count("\n") == 1
