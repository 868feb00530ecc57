"""ResilientLimiter: each failure policy, the retry interval, and logging once."""

from __future__ import annotations

import logging

import pytest

from kit.ratelimit import (
    Decision,
    FailurePolicy,
    LocalFixedWindow,
    Quota,
    RateLimitBackendError,
    ResilientLimiter,
)
from kit.ratelimit.tests.conftest import ManualClock


class FlakyLimiter:
    """Admits everything, or raises the backend error while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        self.calls += 1
        if self.down:
            raise RateLimitBackendError("connection refused")
        return Decision(True, 99, 0.0)


def resilient(policy: FailurePolicy, clock: ManualClock, primary: FlakyLimiter) -> ResilientLimiter:
    fallback = LocalFixedWindow(Quota(limit=2, period=60), clock=clock)
    return ResilientLimiter(
        primary, policy=policy, fallback=fallback, name="rule", retry_interval=1.0, clock=clock
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (FailurePolicy.FAIL_OPEN, [True, True, True]),
        (FailurePolicy.FAIL_CLOSED, [False, False, False]),
        (FailurePolicy.LOCAL, [True, True, False]),
    ],
)
async def test_policy_decides_while_the_backend_is_down(
    clock: ManualClock, policy: FailurePolicy, expected: list[bool]
) -> None:
    primary = FlakyLimiter()
    limiter = resilient(policy, clock, primary)
    assert not (await limiter.acquire("k")).degraded

    primary.down = True
    decisions = [await limiter.acquire("k") for _ in range(3)]

    assert [d.allowed for d in decisions] == expected
    assert all(d.degraded for d in decisions)
    assert limiter.backend_down
    if policy is FailurePolicy.FAIL_CLOSED:
        assert decisions[0].retry_after == 1.0


async def test_backend_is_retried_once_per_interval_and_recovers(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    primary = FlakyLimiter()
    limiter = resilient(FailurePolicy.FAIL_OPEN, clock, primary)
    primary.down = True
    caplog.set_level(logging.INFO, logger="kit.ratelimit.resilient")

    for _ in range(50):
        await limiter.acquire("k")
    assert primary.calls == 1  # the rest were decided without touching the backend

    clock.advance(1.0)
    await limiter.acquire("k")
    assert primary.calls == 2  # one probe; still down

    primary.down = False
    clock.advance(1.0)
    decision = await limiter.acquire("k")
    assert not decision.degraded
    assert not limiter.backend_down

    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            "WARNING",
            "rate limit backend unavailable; admitting every request (fail open) "
            "until it answers again",
        ),
        ("INFO", "rate limit backend is back"),
    ]
    assert caplog.records[0].policy == "fail_open"  # type: ignore[attr-defined]


def test_local_policy_needs_a_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        ResilientLimiter(FlakyLimiter(), policy=FailurePolicy.LOCAL, name="rule")
