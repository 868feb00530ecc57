"""Unit tests of the in-process token bucket, driven by a hand-moved clock."""

from __future__ import annotations

import math

import pytest

from kit.ratelimit import TokenBucket


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_starts_full_and_allows_a_burst_of_capacity(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=1, capacity=3, clock=clock)

    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_refills_at_rate_up_to_capacity(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=2, capacity=4, clock=clock)
    for _ in range(4):
        assert bucket.try_acquire()

    clock.advance(0.5)
    assert bucket.tokens == pytest.approx(1.0)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()

    clock.advance(60)
    assert bucket.tokens == pytest.approx(4.0)


def test_cost_greater_than_one_takes_that_many_tokens(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=1, capacity=5, clock=clock)

    assert bucket.try_acquire(cost=3)
    assert not bucket.try_acquire(cost=3)
    assert bucket.tokens == pytest.approx(2.0)
    assert bucket.try_acquire(cost=2)


def test_failed_acquire_takes_nothing(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=1, capacity=2, clock=clock)
    assert bucket.try_acquire()

    assert not bucket.try_acquire(cost=2)
    assert bucket.tokens == pytest.approx(1.0)


def test_seconds_until_available_is_the_retry_after(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=4, capacity=2, clock=clock)
    assert bucket.seconds_until_available() == 0.0
    assert bucket.try_acquire(cost=2)

    assert bucket.seconds_until_available() == pytest.approx(0.25)
    assert bucket.seconds_until_available(cost=2) == pytest.approx(0.5)

    clock.advance(0.25)
    assert bucket.seconds_until_available() == 0.0
    assert bucket.try_acquire()


@pytest.mark.parametrize("rate", [3.0, 5.0, 7.0])
def test_waiting_the_retry_after_is_always_enough(clock: ManualClock, rate: float) -> None:
    bucket = TokenBucket(rate=rate, capacity=1, clock=clock)
    for _ in range(50):
        if not bucket.try_acquire():
            clock.advance(bucket.seconds_until_available())
            assert bucket.try_acquire()
        clock.advance(0.01)


def test_cost_above_capacity_is_never_admitted(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=10, capacity=2, clock=clock)

    assert not bucket.try_acquire(cost=3)
    assert bucket.seconds_until_available(cost=3) == math.inf


def test_clock_going_backwards_does_not_drain_tokens(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=1, capacity=2, clock=clock)
    assert bucket.try_acquire()

    clock.advance(-10)
    assert bucket.tokens == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("rate", "capacity"), [(0, 1), (1, 0), (-1, 1), (math.inf, 1), (1, math.nan)]
)
def test_rejects_invalid_parameters(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TokenBucket(rate=rate, capacity=capacity)


def test_rejects_negative_cost(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=1, capacity=1, clock=clock)

    with pytest.raises(ValueError, match="negative"):
        bucket.try_acquire(cost=-1)
    with pytest.raises(ValueError, match="negative"):
        bucket.seconds_until_available(cost=-1)
