"""In-process limiters: bounded memory, the synchronous API, leaky ≡ token bucket."""

from __future__ import annotations

import random

import pytest

from kit.ratelimit import (
    LOCAL_LIMITERS,
    Algorithm,
    LocalFixedWindow,
    LocalLeakyBucket,
    LocalTokenBucket,
    Quota,
)
from kit.ratelimit.tests.conftest import ManualClock


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_idle_keys_are_swept(clock: ManualClock, algorithm: Algorithm) -> None:
    limiter = LOCAL_LIMITERS[algorithm](Quota(limit=5, period=1), clock=clock, sweep_interval=1)
    for n in range(1000):
        limiter.check(f"ip-{n}")
    assert len(limiter) == 1000

    clock.advance(2.5)  # past two periods: every state is as good as fresh
    limiter.check("newcomer")

    assert len(limiter) == 1


def test_busy_keys_survive_the_sweep(clock: ManualClock) -> None:
    limiter = LocalTokenBucket(Quota(limit=5, period=10), clock=clock, sweep_interval=1)
    for _ in range(5):
        limiter.check("busy")
    limiter.check("idle", cost=0)

    clock.advance(1)
    limiter.sweep()

    assert len(limiter) == 1
    assert not limiter.check("busy").allowed


def test_max_keys_bounds_memory_by_forgetting_the_oldest_key(clock: ManualClock) -> None:
    limiter = LocalFixedWindow(Quota(limit=1, period=60), clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.check(key).allowed

    assert limiter.check("d").allowed

    assert len(limiter) == 3
    assert limiter.check("a").allowed  # forgotten, so fresh again: lenient, never stricter
    assert not limiter.check("d").allowed


def test_leaky_bucket_admits_exactly_what_a_token_bucket_admits(clock: ManualClock) -> None:
    clock.now_us = 0  # a monotonic clock's magnitude, as in production
    quota = Quota(limit=7, period=3, burst=4)
    token, leaky = LocalTokenBucket(quota, clock=clock), LocalLeakyBucket(quota, clock=clock)
    rng = random.Random("leaky")
    for _ in range(2000):
        clock.advance(rng.randrange(0, 600) / 1000)
        cost = rng.choice([0, 1, 1, 2, 3])
        ours, theirs = leaky.check("k", cost), token.check("k", cost)
        assert (ours.allowed, ours.remaining) == (theirs.allowed, theirs.remaining)
        assert ours.retry_after == pytest.approx(theirs.retry_after)


async def test_acquire_is_check(clock: ManualClock) -> None:
    limiter = LocalTokenBucket(Quota(limit=1, period=1), clock=clock)

    assert (await limiter.acquire("k")).allowed
    assert not limiter.check("k").allowed


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_negative_cost_is_refused(clock: ManualClock, algorithm: Algorithm) -> None:
    limiter = LOCAL_LIMITERS[algorithm](Quota(limit=1, period=1), clock=clock)

    with pytest.raises(ValueError, match="negative"):
        limiter.check("k", cost=-1)


@pytest.mark.parametrize(
    ("limit", "period", "burst"),
    [(0, 1.0, None), (1, 0.0, None), (1, float("inf"), None), (1, 1.0, 0)],
)
def test_quota_refuses_nonsense(limit: int, period: float, burst: int | None) -> None:
    with pytest.raises(ValueError, match="must be"):
        Quota(limit, period, burst)


def test_quota_rate_and_capacity() -> None:
    assert Quota(10, 60).rate == pytest.approx(1 / 6)
    assert Quota(10, 60).capacity == 10
    assert Quota(10, 60, burst=5).capacity == 5
