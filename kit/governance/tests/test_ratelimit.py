"""Per-method rate limits: a burst, then no token, then a refill; which methods are limited.

The limiter on its own; on the wire (RESOURCE_EXHAUSTED with ``RetryInfo``, counted, health
checks spared), see ``test_server.py``.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kit.governance import GovernanceMetrics, RateLimit, RateLimitConfig, RateLimiter
from kit.governance.tests.support import LOGIN, PROFILE, ManualClock


def limiter(config: RateLimitConfig, clock: ManualClock) -> RateLimiter:
    return RateLimiter(config, metrics=GovernanceMetrics(CollectorRegistry()), clock=clock)


def test_burst_then_no_token_then_refill() -> None:
    clock = ManualClock()
    limits = limiter(RateLimitConfig(per_method={PROFILE: RateLimit(rate=5, burst=3)}), clock)
    bucket = limits.bucket_for(PROFILE)
    assert bucket is not None

    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.seconds_until_available() == pytest.approx(0.2)
    clock.advance(0.2)
    assert bucket.try_acquire()
    assert limits.bucket_for(PROFILE) is bucket


def test_default_limit_and_per_method_override() -> None:
    config = RateLimitConfig(default=RateLimit(rate=1, burst=1), per_method={LOGIN: None})
    limits = limiter(config, ManualClock())

    assert config.limits_anything
    assert not RateLimitConfig(per_method={LOGIN: None}).limits_anything
    assert limits.bucket_for(LOGIN) is None
    bucket = limits.bucket_for(PROFILE)
    assert bucket is not None
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]


def test_rate_limit_is_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(rate=1, burst=0.5)
