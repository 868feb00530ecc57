"""In-process caches invalidated over Redis pub/sub: the cache's rules, and a real feed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from kit.cache.invalidation import InvalidatedCache, InvalidationFeed, publish_invalidation

CHANNEL = "webook:test:invalidation"


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class _AlwaysFresh:
    """Stands in for a feed whose subscription is confirmed."""

    fresh = True


def fresh_cache(
    clock: _Clock, *, max_entries: int = 100, max_age: float = 60.0
) -> InvalidatedCache[str, int]:
    cache: InvalidatedCache[str, int] = InvalidatedCache(
        clock=clock, max_entries=max_entries, max_age=max_age
    )
    cache.attach(_AlwaysFresh())  # type: ignore[arg-type]  # only .fresh is read
    return cache


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {seconds} s")


def test_without_a_fresh_feed_nothing_is_cached_or_answered() -> None:
    cache: InvalidatedCache[str, int] = InvalidatedCache()
    assert not cache.usable
    assert not cache.put("a", 1, cache.ticket())
    assert cache.get("a") is None


def test_a_fill_that_raced_an_invalidation_is_dropped() -> None:
    cache = fresh_cache(_Clock())
    ticket = cache.ticket()  # a lookup missed and reads the source ...
    cache.invalidate("other")  # ... while some change is announced
    assert not cache.put("a", 1, ticket)
    assert cache.get("a") is None
    assert cache.put("a", 2, cache.ticket())
    assert cache.get("a") == 2
    ticket = cache.ticket()
    cache.clear()
    assert cache.get("a") is None
    assert not cache.put("a", 3, ticket)


def test_entries_are_bounded_and_expire() -> None:
    clock = _Clock()
    cache = fresh_cache(clock, max_entries=2, max_age=10.0)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value, cache.ticket())
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    assert len(cache) == 2
    clock.now += 10.0
    assert cache.get("b") is None


@pytest.mark.parametrize(("max_entries", "max_age"), [(0, 1.0), (1, 0.0)])
def test_bad_bounds_are_refused(max_entries: int, max_age: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        InvalidatedCache(max_entries=max_entries, max_age=max_age)


@pytest.mark.integration
async def test_a_real_feed_applies_announced_changes_and_resets_when_cut(
    redis_client: aioredis.Redis,
) -> None:
    received: list[bytes] = []
    resets: list[int] = []
    cache: InvalidatedCache[str, int] = InvalidatedCache()

    def on_message(member: bytes) -> None:
        received.append(member)
        cache.invalidate(member.decode())

    def on_reset() -> None:
        resets.append(1)
        cache.clear()

    feed = InvalidationFeed(
        redis_client, CHANNEL, name="test", on_message=on_message, on_reset=on_reset
    )
    cache.attach(feed)
    feed.start()
    try:
        await eventually(lambda: feed.fresh)
        assert cache.put("k", 1, cache.ticket())

        replies = await publish_invalidation(
            redis_client, CHANNEL, "k", ("SET", "webook:test:k", "2")
        )
        assert replies == [True, 1]  # the change, and one subscriber told
        await eventually(lambda: received == [b"k"])
        assert cache.get("k") is None
        assert await redis_client.get("webook:test:k") == b"2"

        assert cache.put("k", 2, cache.ticket())
        resets_before = len(resets)
        await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        await eventually(lambda: len(resets) > resets_before)
        assert cache.get("k") is None
        await eventually(lambda: feed.fresh)
    finally:
        await feed.aclose()
    assert not feed.fresh
    assert not cache.usable


def test_a_lag_not_above_the_ping_interval_is_refused(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="max_lag"):
        InvalidationFeed(
            redis_client,
            CHANNEL,
            name="test",
            on_message=lambda _: None,
            on_reset=lambda: None,
            ping_interval=1.0,
            max_lag=1.0,
        )
