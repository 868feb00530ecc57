"""All sessions of a user revoked at once: the per-user mark, its announcement, its caches."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.auth.sessions import USER_KEY_PREFIX, SessionRevocations, SessionStoreUnavailable
from gateway.tests.test_session_feed import eventually

DAY = timedelta(days=1)


async def test_a_mark_announced_elsewhere_refuses_cached_sessions_of_that_user(
    redis_client: aioredis.Redis,
) -> None:
    gateway = SessionRevocations(redis_client, ttl=DAY, on_error="deny", feed=True)
    operator = SessionRevocations(redis_client, ttl=DAY, on_error="deny", feed=True)
    gateway.start()
    try:
        feed = gateway.feed
        assert feed is not None
        await eventually(lambda: feed.fresh)
        issued = int(time.time()) - 10
        assert await gateway.is_active("phone", issued_at=issued, uid=7)
        assert await gateway.is_active("laptop", issued_at=issued, uid=8)
        before = await operator.revoke_user(7)
        # The cached "active" answer of user 7's session gives way as the mark arrives.
        await eventually(lambda: gateway._marked(7, issued))
        assert not await gateway.is_active("phone", issued_at=issued, uid=7)
        assert await gateway.is_active("laptop", issued_at=issued, uid=8)
        # A login after the mark (a later second) is a new session, accepted.
        assert await gateway.is_active("phone-2", issued_at=int(before) + 1, uid=7)
        assert 0 < await redis_client.ttl(f"{USER_KEY_PREFIX}7") <= DAY.total_seconds()
    finally:
        await gateway.aclose()


async def test_a_process_that_missed_the_announcement_reads_the_mark_from_redis(
    redis_client: aioredis.Redis,
) -> None:
    operator = SessionRevocations(redis_client, ttl=DAY, on_error="deny")
    before = await operator.revoke_user(9)
    later = SessionRevocations(redis_client, ttl=DAY, on_error="allow", cache_ttl=1.0)
    assert not await later.is_active("old", issued_at=before - 5, uid=9)
    assert await later.is_active("new", issued_at=before + 1, uid=9)
    # Without uid (an older caller) only the session's own key is read.
    assert await later.is_active("old", issued_at=before - 5)


async def test_a_known_mark_still_refuses_while_redis_is_unreachable(
    redis_client: aioredis.Redis,
) -> None:
    sessions = SessionRevocations(redis_client, ttl=DAY, on_error="allow", fail_static=300.0)
    before = await sessions.revoke_user(11)
    unreachable = aioredis.Redis(port=1, socket_connect_timeout=0.2)
    offline = SessionRevocations(unreachable, ttl=DAY, on_error="allow", fail_static=300.0)
    try:
        # It learns the mark while Redis answers ...
        offline._remember_mark(11, before)
        # ... and keeps refusing with Redis gone, though the fallback is "allow".
        assert not await offline.is_active("old", issued_at=before - 5, uid=11)
        assert await offline.is_active("other", issued_at=before - 5, uid=12)
        marked = time.time()
        with pytest.raises(SessionStoreUnavailable) as raised:
            await offline.revoke_user(13, before=marked)
        assert isinstance(raised.value.__cause__, RedisConnectionError | OSError)
        # Not recorded in Redis, but this process refuses the user's earlier tokens.
        assert not await offline.is_active("s", issued_at=int(marked) - 1, uid=13)
    finally:
        await unreachable.aclose()


async def test_the_cache_lifetime_is_live_without_the_feed(redis_client: aioredis.Redis) -> None:
    sessions = SessionRevocations(redis_client, ttl=DAY, on_error="deny", cache_ttl=1.0)
    assert sessions.cache_ttl == 1.0
    sessions.cache_ttl = 0.0
    assert await sessions.is_active("s1")
    await redis_client.set("users:ssid:s1", 1)
    assert not await sessions.is_active("s1")  # no cached answer any more
    with_feed = SessionRevocations(redis_client, ttl=DAY, on_error="deny", feed=True)
    with_feed.cache_ttl = 0.5
    assert with_feed.cache_ttl == 0.0  # the feed's exact cache is used instead
