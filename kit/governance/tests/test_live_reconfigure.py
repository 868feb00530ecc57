"""Live reconfiguration of the breaker, the client policy and the load shedder: new
thresholds apply to the next call, history and slots in flight stay."""

from __future__ import annotations

import dataclasses

from kit.governance import (
    BreakerConfig,
    CircuitBreaker,
    DeadlineConfig,
    GovernanceConfig,
    LoadShedder,
    SheddingConfig,
    UnaryClientPolicy,
)
from kit.governance.tests.support import PROFILE, ManualClock, ScriptedRandom


def _breaker(config: BreakerConfig) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker("user", config, clock=clock, random_source=ScriptedRandom(0.0)), clock


def test_lower_k_and_min_requests_open_a_breaker_on_the_history_it_has() -> None:
    breaker, _ = _breaker(BreakerConfig(k=1.5, min_requests=100))
    throttle = breaker.throttle_for(PROFILE)
    for _ in range(10):
        throttle.record(accepted=True)
    for _ in range(10):
        throttle.record(accepted=False)
    assert throttle.rejection_probability() == 0.0  # fewer than 100 requests
    breaker.reconfigure(BreakerConfig(k=1.0, min_requests=10))
    assert breaker.throttle_for(PROFILE) is throttle  # same breaker, same history
    assert throttle.rejection_probability() == (20 - 1.0 * 10) / 21
    breaker.reconfigure(BreakerConfig(k=2.0, min_requests=10))
    assert throttle.rejection_probability() == 0.0  # 2 x 10 accepts cover 20 requests


def test_a_new_window_starts_every_breaker_afresh() -> None:
    breaker, _ = _breaker(BreakerConfig(min_requests=0))
    old = breaker.throttle_for(PROFILE)
    old.record(accepted=False)
    breaker.reconfigure(BreakerConfig(min_requests=0, window=30.0))
    fresh = breaker.throttle_for(PROFILE)
    assert fresh is not old
    assert fresh.rejection_probability() == 0.0
    assert breaker.config.window == 30.0


def test_the_client_policy_switches_its_breaker_on_and_off_and_takes_new_deadlines() -> None:
    off = GovernanceConfig(breaker=BreakerConfig(enabled=False))
    policy = UnaryClientPolicy("user", off, metrics=None)
    assert policy.breaker is None
    on = dataclasses.replace(
        off,
        breaker=BreakerConfig(k=1.1),
        deadline=DeadlineConfig(default_timeout=1.5),
    )
    policy.reconfigure(on)
    assert policy.breaker is not None
    assert policy.breaker.config.k == 1.1
    kept = policy.breaker
    policy.reconfigure(dataclasses.replace(on, breaker=BreakerConfig(k=1.3)))
    assert policy.breaker is kept
    assert kept.config.k == 1.3
    assert policy._deadlines.bound(PROFILE, None) == 1.5
    policy.reconfigure(off)
    assert policy.breaker is None


def test_the_shedder_takes_a_lower_cap_at_once_and_keeps_its_slots() -> None:
    shedder = LoadShedder(SheddingConfig(max_in_flight=4, cpu_threshold=None))
    assert all(shedder.enter() for _ in range(3))
    shedder.reconfigure(SheddingConfig(max_in_flight=2, cpu_threshold=None))
    assert shedder.in_flight == 3
    assert not shedder.enter()
    shedder.leave()
    shedder.leave()
    assert shedder.enter()  # one in flight: room under the new cap
    shedder.reconfigure(SheddingConfig(max_in_flight=10, cpu_threshold=None))
    assert all(shedder.enter() for _ in range(8))
    assert not shedder.enter()
