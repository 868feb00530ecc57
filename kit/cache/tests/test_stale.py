"""The stale-copy rules of :class:`InvalidatedCache` and the short-circuit of
:class:`kit.redisx.RedisHealth`, with fakes (no Redis, no clocks of the machine)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from kit.cache.invalidation import InvalidatedCache
from kit.redisx import RedisHealth, RedisState, RedisUnavailable


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Feed:
    """A feed whose freshness, last word and backend state the test sets."""

    def __init__(self, clock: _Clock) -> None:
        self.fresh = True
        self.vouched_at: float | None = clock.now
        self.backend_down = False


def _stale_serves(name: str) -> float:
    value = REGISTRY.get_sample_value("webook_cache_stale_serves_total", {"cache": name})
    return value or 0.0


def _serving_stale_gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("webook_cache_serving_stale", {"cache": name})


def _cache(
    clock: _Clock, name: str, *, stale_for: float = 300.0, max_age: float = 60.0
) -> tuple[InvalidatedCache[str, int], _Feed]:
    cache: InvalidatedCache[str, int] = InvalidatedCache(
        max_age=max_age, stale_for=stale_for, name=name, clock=clock
    )
    feed = _Feed(clock)
    cache.attach(feed)
    return cache, feed


def _lose_feed(cache: InvalidatedCache[str, int], feed: _Feed, *, backend_down: bool) -> None:
    feed.fresh = False
    feed.backend_down = backend_down
    cache.lost()


def test_a_lost_feed_with_redis_up_misses_so_callers_ask_redis() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "t_up")
    assert cache.put("a", 1, cache.ticket())
    _lose_feed(cache, feed, backend_down=False)

    assert cache.get("a") is None
    assert not cache.serving_stale
    assert len(cache) == 1  # kept, in case Redis turns out to be down


def test_with_redis_down_the_last_copy_is_answered_and_counted_for_a_bounded_age() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "t_down", stale_for=300.0)
    assert cache.put("a", 1, cache.ticket())
    feed.vouched_at = clock.now
    before = _stale_serves("t_down")
    _lose_feed(cache, feed, backend_down=True)

    clock.now += 120.0  # past max_age (60 s): an outage serves what was valid before it
    assert cache.serving_stale
    assert _serving_stale_gauge("t_down") == 1.0
    assert cache.get("a") == 1
    assert cache.get("missing") is None
    assert _stale_serves("t_down") - before == 1

    clock.now += 180.1  # more than stale_for after the feed's last word
    assert not cache.serving_stale
    assert _serving_stale_gauge("t_down") == 0.0
    assert cache.get("a") is None
    assert _stale_serves("t_down") - before == 1


def test_a_copy_already_expired_when_the_feed_went_quiet_is_not_answered() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "t_expired", max_age=10.0)
    assert cache.put("a", 1, cache.ticket())
    clock.now += 11.0
    feed.vouched_at = clock.now
    _lose_feed(cache, feed, backend_down=True)

    assert cache.get("a") is None


def test_changes_made_here_during_the_outage_still_apply() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "t_local_write")
    for key, value in (("a", 1), ("b", 2)):
        assert cache.put(key, value, cache.ticket())
    ticket = cache.ticket()
    _lose_feed(cache, feed, backend_down=True)

    cache.invalidate("a")  # this process wrote "a"
    assert cache.get("a") is None
    assert cache.get("b") == 2
    # A fill that started before the loss, or during it, is never kept.
    assert not cache.put("c", 3, ticket)
    assert not cache.put("c", 3, cache.ticket())


def test_the_feed_back_drops_every_stale_copy() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "t_back")
    assert cache.put("a", 1, cache.ticket())
    _lose_feed(cache, feed, backend_down=True)
    assert cache.get("a") == 1

    cache.clear()  # what the feed calls when the subscription is confirmed again
    feed.fresh, feed.backend_down, feed.vouched_at = True, False, clock.now
    assert cache.get("a") is None
    assert len(cache) == 0


def test_without_stale_for_a_lost_feed_empties_the_cache_as_before() -> None:
    clock = _Clock()
    cache, feed = _cache(clock, "", stale_for=0.0)
    assert cache.put("a", 1, cache.ticket())
    _lose_feed(cache, feed, backend_down=True)

    assert len(cache) == 0
    assert cache.get("a") is None
    assert not cache.serving_stale


def test_stale_copies_need_a_metrics_name_and_a_sane_window() -> None:
    with pytest.raises(ValueError, match="name"):
        InvalidatedCache(stale_for=1.0)
    with pytest.raises(ValueError, match="stale_for"):
        InvalidatedCache(stale_for=-1.0, name="x")


class _Probe:
    """A probe that fails until told to succeed, counting its calls."""

    def __init__(self) -> None:
        self.answers = False
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if not self.answers:
            raise RedisUnavailable("still frozen")


def _short_circuits(name: str) -> float:
    value = REGISTRY.get_sample_value("webook_redis_short_circuits_total", {"client": name})
    return value or 0.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(what)


async def test_a_timeout_short_circuits_until_the_probe_answers() -> None:
    probe = _Probe()
    health = RedisHealth("t_hung", probe=probe, probe_interval=0.01)
    health.check()  # up: nothing raised
    before = _short_circuits("t_hung")

    health.timed_out("test")
    assert health.state is RedisState.HUNG
    assert not health.available
    with pytest.raises(RedisUnavailable):
        health.check()
    assert _short_circuits("t_hung") - before == 1
    assert REGISTRY.get_sample_value("webook_redis_short_circuit", {"client": "t_hung"}) == 1
    await _until(lambda: probe.calls >= 2, "the probe keeps trying while Redis hangs")
    assert health.state is RedisState.HUNG

    probe.answers = True
    await _until(lambda: health.available, "the probe's answer reopens the client")
    health.check()
    assert REGISTRY.get_sample_value("webook_redis_reachable", {"client": "t_hung"}) == 1
    assert REGISTRY.get_sample_value("webook_redis_short_circuit", {"client": "t_hung"}) == 0
    await health.aclose()


async def test_a_refused_connection_marks_down_without_short_circuiting() -> None:
    probe = _Probe()
    health = RedisHealth("t_refused", probe=probe, probe_interval=0.01)

    health.refused("connection refused")
    assert health.state is RedisState.DOWN
    assert not health.available
    assert health.unavailable_since is not None
    health.check()  # commands still try: a refusing Redis fails fast by itself
    health.timed_out("then a timeout")
    assert health.state in (RedisState.HUNG,)  # (a tuple: mypy keeps the narrowed DOWN)

    health.reached()  # e.g. a connection succeeded
    assert health.available
    assert health.unavailable_since is None
    await health.aclose()
