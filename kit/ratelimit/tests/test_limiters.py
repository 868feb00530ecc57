"""One behavioural spec for every algorithm and every implementation.

Each test runs against the in-process limiter, the Redis limiter and the batched Redis
limiter (see ``limiter_factory``), all driven by the same hand-moved clock.
"""

from __future__ import annotations

import math
import random

import pytest

from kit.ratelimit import Algorithm, Decision, Limiter, Quota
from kit.ratelimit.tests.conftest import LimiterFactory, ManualClock

ALL = list(Algorithm)
BUCKETS = [Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET]


async def take(limiter: Limiter, n: int, key: str = "k", cost: int = 1) -> list[Decision]:
    return [await limiter.acquire(key, cost) for _ in range(n)]


def allowed(decisions: list[Decision]) -> list[bool]:
    return [d.allowed for d in decisions]


@pytest.mark.parametrize("algorithm", ALL)
async def test_admits_the_quota_then_refuses(
    limiter_factory: LimiterFactory, algorithm: Algorithm
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=5, period=10))

    decisions = await take(limiter, 6)

    assert allowed(decisions) == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert [d.retry_after for d in decisions[:5]] == [0.0] * 5
    assert 0 < decisions[5].retry_after <= 20  # the approximate window: up to two periods


@pytest.mark.parametrize("algorithm", ALL)
async def test_keys_are_independent(limiter_factory: LimiterFactory, algorithm: Algorithm) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=2, period=10))

    assert allowed(await take(limiter, 3, key="a")) == [True, True, False]
    assert allowed(await take(limiter, 3, key="b")) == [True, True, False]


@pytest.mark.parametrize("algorithm", ALL)
async def test_cost_takes_that_many_units_all_or_nothing(
    limiter_factory: LimiterFactory, algorithm: Algorithm
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=5, period=10))

    assert (await limiter.acquire("k", cost=3)).remaining == 2
    refused = await limiter.acquire("k", cost=3)
    assert not refused.allowed
    assert refused.remaining == 2
    assert (await limiter.acquire("k", cost=2)).allowed


@pytest.mark.parametrize("algorithm", ALL)
async def test_cost_above_the_quota_is_never_admitted(
    limiter_factory: LimiterFactory, algorithm: Algorithm
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=3, period=10))

    decision = await limiter.acquire("k", cost=4)

    assert not decision.allowed
    assert decision.retry_after == math.inf
    assert (await limiter.acquire("k", cost=3)).allowed


@pytest.mark.parametrize("algorithm", ALL)
async def test_zero_cost_reads_without_consuming(
    limiter_factory: LimiterFactory, algorithm: Algorithm
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=2, period=10))
    await limiter.acquire("k")

    peek = await limiter.acquire("k", cost=0)

    assert peek.allowed
    assert peek.remaining == 1
    assert allowed(await take(limiter, 2)) == [True, False]


@pytest.mark.parametrize("algorithm", ALL)
async def test_waiting_retry_after_is_enough_and_no_more_than_needed(
    limiter_factory: LimiterFactory, algorithm: Algorithm, clock: ManualClock
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=3, period=2))
    rng = random.Random(f"retry-{algorithm}")
    refusals = 0
    for _ in range(60):
        clock.advance(rng.randrange(0, 400) / 1000)
        cost = rng.choice([1, 1, 2])
        decision = await limiter.acquire("k", cost)
        if decision.allowed:
            continue
        refusals += 1
        wait_us = math.ceil(decision.retry_after * 1e6)
        if wait_us > 2_000:
            clock.now_us += wait_us - 1_000
            assert not (await limiter.acquire("k", cost)).allowed, "retry_after is too long"
            clock.now_us += 1_000
        else:
            clock.now_us += wait_us
        assert (await limiter.acquire("k", cost)).allowed, "retry_after is too short"
    assert refusals >= 10


@pytest.mark.parametrize("algorithm", BUCKETS)
async def test_buckets_refill_at_the_rate_up_to_the_burst(
    limiter_factory: LimiterFactory, algorithm: Algorithm, clock: ManualClock
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=4, period=2, burst=3))  # 2 per second
    assert allowed(await take(limiter, 4)) == [True, True, True, False]

    clock.advance(0.5)
    assert allowed(await take(limiter, 2)) == [True, False]

    clock.advance(60)
    assert [d.remaining for d in await take(limiter, 3)] == [2, 1, 0]


@pytest.mark.parametrize("algorithm", BUCKETS)
async def test_buckets_burst_below_the_limit(
    limiter_factory: LimiterFactory, algorithm: Algorithm
) -> None:
    limiter = limiter_factory(algorithm, Quota(limit=10, period=60, burst=5))

    decisions = await take(limiter, 6)

    assert allowed(decisions) == [True] * 5 + [False]
    assert decisions[5].retry_after == pytest.approx(6.0)


async def test_fixed_window_resets_on_the_window_edge(
    limiter_factory: LimiterFactory, clock: ManualClock
) -> None:
    limiter = limiter_factory(Algorithm.FIXED_WINDOW, Quota(limit=3, period=1))
    clock.set_offset(0.5)
    assert allowed(await take(limiter, 4)) == [True, True, True, False]
    assert (await limiter.acquire("k")).retry_after == pytest.approx(0.5)

    clock.set_offset(0.999)
    assert not (await limiter.acquire("k")).allowed
    clock.set_offset(1.0)
    # The known weakness: a full window's worth on each side of an edge.
    assert allowed(await take(limiter, 4)) == [True, True, True, False]


async def test_sliding_log_counts_any_period_long_span(
    limiter_factory: LimiterFactory, clock: ManualClock
) -> None:
    limiter = limiter_factory(Algorithm.SLIDING_WINDOW, Quota(limit=3, period=1))
    clock.set_offset(0.2)
    await limiter.acquire("k")
    clock.set_offset(0.999)
    assert allowed(await take(limiter, 3)) == [True, True, False]

    clock.set_offset(1.0)  # a fixed window would start afresh here
    refused = await limiter.acquire("k")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.2)

    clock.set_offset(1.2)  # the entry of 0.2 has aged out, those of 0.999 have not
    assert allowed(await take(limiter, 2)) == [True, False]
    clock.set_offset(1.999)
    assert allowed(await take(limiter, 3)) == [True, True, False]


async def test_sliding_counter_weighs_the_previous_window(
    limiter_factory: LimiterFactory, clock: ManualClock
) -> None:
    limiter = limiter_factory(Algorithm.SLIDING_WINDOW_APPROX, Quota(limit=10, period=1))
    clock.set_offset(0.5)
    assert allowed(await take(limiter, 10)) == [True] * 10

    clock.set_offset(1.25)  # the previous window still weighs 75%: 7.5 of 10 used
    decisions = await take(limiter, 3)

    assert allowed(decisions) == [True, True, False]
    assert [d.remaining for d in decisions] == [1, 0, 0]
    # 10 * (1 - t) + 2 + 1 <= 10 from t = 0.3 of the window on.
    assert decisions[2].retry_after == pytest.approx(0.05)

    clock.set_offset(3.0)  # two windows later nothing is left of either
    assert (await limiter.acquire("k")).remaining == 9
