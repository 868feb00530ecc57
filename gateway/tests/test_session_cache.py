"""The in-process cache of session checks: bounded staleness, local revocations at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.auth.sessions import KEY_PREFIX, SessionRevocations


class _Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sessions(redis_client: Any, clock: _Clock, cache_ttl: float = 1.0) -> SessionRevocations:
    return SessionRevocations(
        redis_client, ttl=timedelta(days=1), on_error="deny", cache_ttl=cache_ttl, clock=clock
    )


async def test_revocation_elsewhere_takes_effect_within_the_cache_ttl(redis_client: Any) -> None:
    clock = _Clock()
    sessions = _sessions(redis_client, clock)
    assert await sessions.is_active("s1")

    # Another gateway process revokes the session.
    await redis_client.set(KEY_PREFIX + "s1", 1)
    clock.now += 0.5
    assert await sessions.is_active("s1")  # the cached answer, at most cache_ttl old
    clock.now += 0.6
    assert not await sessions.is_active("s1")


async def test_revocation_through_this_process_takes_effect_at_once(redis_client: Any) -> None:
    clock = _Clock()
    sessions = _sessions(redis_client, clock)
    assert await sessions.is_active("s2")
    assert await sessions.is_active("s3")

    await sessions.revoke("s2")
    assert await sessions.revoke_if_active("s3")

    assert not await sessions.is_active("s2")
    assert not await sessions.is_active("s3")


async def test_no_cache_asks_redis_every_time(redis_client: Any) -> None:
    sessions = _sessions(redis_client, _Clock(), cache_ttl=0)
    assert await sessions.is_active("s4")
    await redis_client.set(KEY_PREFIX + "s4", 1)
    assert not await sessions.is_active("s4")


def test_negative_cache_ttl_is_refused(redis_client: Any) -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        _sessions(redis_client, _Clock(), cache_ttl=-1)
