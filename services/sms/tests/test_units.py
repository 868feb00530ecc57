"""Unit tests with in-memory fakes: phones, detectors, health cycle, retry and failover."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from kit.phone import CountryNotAllowed, InvalidPhoneNumber
from services.sms.domain import PhoneRules, canonical_phone, mask_phone, to_e164
from services.sms.metrics import SmsMetrics
from services.sms.providers.failover import FailoverProvider
from services.sms.providers.health import (
    ConsecutiveThrottles,
    ConsecutiveTimeouts,
    ErrorRate,
    HealthPolicy,
    HealthState,
    LatencyRise,
    LongTail,
    Outcome,
    ProviderHealth,
    Sample,
)
from services.sms.providers.port import (
    AllProvidersFailed,
    NoProviderAvailable,
    ProviderRateLimited,
    ProviderRejected,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)
from services.sms.providers.retry import RetryingProvider
from services.sms.tests.fakes import ScriptedProvider


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("phone", "e164"),
    [
        ("13800138000", "+8613800138000"),
        ("19912345678", "+8619912345678"),
        ("+8613800138000", "+8613800138000"),
        (" +86 138-0013-8000 ", "+8613800138000"),
        ("+447400123456", "+447400123456"),
    ],
)
def test_canonical_phone_is_e164(phone: str, e164: str) -> None:
    rules = PhoneRules(allowed_countries=frozenset({"CN", "GB"}))
    assert canonical_phone(phone, rules) == e164


@pytest.mark.parametrize(
    "phone",
    [
        "12800138000",
        "1380013800",
        "138001380001",
        "+0123456789",
        "+12345",
        "",
        "".join(chr(0xFF10 + int(d)) for d in "13800138000"),
    ],
)
def test_invalid_phones_are_refused(phone: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        canonical_phone(phone, PhoneRules())


def test_phones_outside_the_allowed_countries_are_refused() -> None:
    with pytest.raises(CountryNotAllowed) as refused:
        canonical_phone("+447400123456", PhoneRules())
    assert refused.value.region == "GB"


def test_phone_masking_and_e164() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert "7700900" not in mask_phone("+447700900123")
    assert mask_phone("12345") == "****45"
    assert to_e164("13812345678") == "+8613812345678"
    assert to_e164("+447700900123") == "+447700900123"


def ok(latency: float = 0.01) -> Sample:
    return Sample(Outcome.OK, latency)


def test_consecutive_timeouts_fire_only_in_a_row() -> None:
    detector = ConsecutiveTimeouts(3)
    timeout = Sample(Outcome.TIMEOUT, 1.0)
    assert detector.observe(timeout) is None
    assert detector.observe(timeout) is None
    assert detector.observe(ok()) is None
    assert detector.observe(timeout) is None
    assert detector.observe(timeout) is None
    assert detector.observe(timeout) == "3 consecutive timeouts"


def test_consecutive_throttles() -> None:
    detector = ConsecutiveThrottles(2)
    throttled = Sample(Outcome.THROTTLED, 0.01)
    assert detector.observe(throttled) is None
    assert detector.observe(ok()) is None
    assert detector.observe(throttled) is None
    assert detector.observe(throttled) is not None


def test_latency_rise_compares_recent_with_baseline() -> None:
    detector = LatencyRise(baseline=10, recent=5, rise=0.2, floor_s=0.005)
    for _ in range(10):
        assert detector.observe(ok(0.100)) is None
    # +10 %: below the 20 % threshold.
    for _ in range(5):
        assert detector.observe(ok(0.110)) is None
    detector.reset()
    for _ in range(10):
        assert detector.observe(ok(0.100)) is None
    fired = [detector.observe(ok(0.150)) for _ in range(5)]
    assert fired[-1] is not None
    assert "rose" in fired[-1]


def test_latency_rise_ignores_rises_below_the_floor() -> None:
    detector = LatencyRise(baseline=4, recent=2, rise=0.2, floor_s=0.05)
    for latency in (0.002, 0.002, 0.002, 0.002, 0.004, 0.004):
        assert detector.observe(ok(latency)) is None


def test_long_tail_ratio() -> None:
    detector = LongTail(threshold_s=1.0, ratio=0.1, window=20, min_samples=10)
    for _ in range(9):
        assert detector.observe(ok(0.1)) is None
    # 1 slow of 10 = 10 %: not more than the ratio.
    assert detector.observe(ok(1.5)) is None
    # 2 slow of 11: above.
    assert detector.observe(Sample(Outcome.TIMEOUT, 2.0)) is not None


def test_error_rate_needs_min_samples() -> None:
    detector = ErrorRate(ratio=0.5, window=10, min_samples=4)
    error = Sample(Outcome.ERROR, 0.01)
    assert detector.observe(error) is None
    assert detector.observe(error) is None
    assert detector.observe(error) is None
    assert detector.observe(error) == "100% of sends failed"
    # Throttling does not count as an error.
    detector.reset()
    for _ in range(10):
        assert detector.observe(Sample(Outcome.THROTTLED, 0.01)) is None


def test_zero_thresholds_disable_detectors() -> None:
    policy = HealthPolicy(
        consecutive_timeouts=0,
        consecutive_throttles=0,
        latency_rise=0,
        long_tail_ratio=0,
        error_rate=0,
    )
    assert policy.detectors() == []
    assert len(HealthPolicy().detectors()) == 5


def test_health_cycle_cooldown_single_probe_and_recovery() -> None:
    clock = FakeClock()
    changes: list[tuple[str, bool, str]] = []
    health = ProviderHealth(
        "p",
        HealthPolicy(consecutive_timeouts=2, cooldown_s=30),
        clock=clock,
        listeners=[lambda *change: changes.append(change)],
    )
    permit = health.acquire()
    assert permit is not None
    health.record(permit, Sample(Outcome.TIMEOUT, 1))
    health.record(permit, Sample(Outcome.TIMEOUT, 1))
    assert health.state is HealthState.UNHEALTHY
    assert changes == [("p", False, "2 consecutive timeouts")]
    assert health.acquire() is None
    assert not health.could_send()

    clock.now += 30
    assert health.could_send()
    probe = health.acquire()
    assert probe is not None
    assert probe.probe
    # Only one probe at a time.
    assert health.acquire() is None
    health.record(probe, Sample(Outcome.ERROR, 0.1))
    assert health.state is HealthState.UNHEALTHY
    assert health.acquire() is None

    clock.now += 30
    probe = health.acquire()
    assert probe is not None
    # A send that never reached the provider gives no verdict.
    health.release(probe)
    assert health.state is HealthState.UNHEALTHY
    probe = health.acquire()
    assert probe is not None
    health.record(probe, ok())
    assert health.healthy
    assert changes[-1] == ("p", True, "probe succeeded")
    # Detectors start afresh after recovery.
    permit = health.acquire()
    assert permit is not None
    health.record(permit, Sample(Outcome.TIMEOUT, 1))
    assert health.healthy


def metrics() -> SmsMetrics:
    return SmsMetrics(CollectorRegistry())


async def test_failover_round_robin_and_moves_on_failure() -> None:
    a = ScriptedProvider("a", None)
    b = ScriptedProvider("b", None)
    failover = FailoverProvider([a, b], HealthPolicy(), metrics())
    for _ in range(4):
        await failover.send("t", ["1"], ["13800138000"])
    assert len(a.calls) == 2
    assert len(b.calls) == 2

    a.answers = [ProviderUnavailable("a", "down")]
    m = metrics()
    failover = FailoverProvider([a, b], HealthPolicy(), m)
    results = [await failover.send("t", ["1"], ["13800138000"]) for _ in range(4)]
    assert {r.provider for r in results} == {"b"}
    assert m.failover_total.labels("a")._value.get() == 2


async def test_failover_stops_at_a_rejected_message() -> None:
    a = ScriptedProvider("a", ProviderRejected("a", "bad number"))
    b = ScriptedProvider("b", None)
    failover = FailoverProvider([a, b], HealthPolicy(), metrics())
    with pytest.raises(ProviderRejected):
        await failover.send("t", [], ["13800138000"])
    assert b.calls == []
    assert failover.health("a").healthy


async def test_failover_all_failed_and_none_available() -> None:
    clock = FakeClock()
    a = ScriptedProvider("a", ProviderThrottled("a", "limit"))
    b = ScriptedProvider("b", ProviderRateLimited("b", "budget"))
    policy = HealthPolicy(consecutive_throttles=1, cooldown_s=10)
    failover = FailoverProvider([a, b], policy, metrics(), clock=clock)
    with pytest.raises(AllProvidersFailed) as failed:
        await failover.send("t", [], ["13800138000"])
    assert not failed.value.worth_backoff_retry
    # a is cooling down after its throttle; b's own rate limit says nothing about b's health.
    assert not failover.health("a").healthy
    assert failover.health("b").healthy
    b.answers = [ProviderTimeout("b", "slow")]
    policy_b = HealthPolicy(consecutive_timeouts=1, cooldown_s=10)
    failover = FailoverProvider([b], policy_b, metrics(), clock=clock)
    with pytest.raises(AllProvidersFailed):
        await failover.send("t", [], ["13800138000"])
    assert not failover.could_send()
    with pytest.raises(NoProviderAvailable):
        await failover.send("t", [], ["13800138000"])


async def test_retry_backs_off_on_transient_errors_only() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    flaky = ScriptedProvider("p", ProviderTimeout("p", "t"), ProviderUnavailable("p", "u"), None)
    retrying = RetryingProvider(
        flaky,
        max_retries=3,
        base_delay_s=0.1,
        max_delay_s=0.15,
        rng=random.Random(7),
        sleep=sleep,
    )
    result = await retrying.send("t", [], ["13800138000"])
    assert result.provider == "p"
    assert len(pauses) == 2
    assert 0 <= pauses[0] <= 0.1
    assert 0 <= pauses[1] <= 0.15

    pauses.clear()
    throttled = ScriptedProvider("p", ProviderThrottled("p", "limit"))
    retrying = RetryingProvider(
        throttled, max_retries=3, base_delay_s=0.1, max_delay_s=1, sleep=sleep
    )
    with pytest.raises(ProviderThrottled):
        await retrying.send("t", [], ["13800138000"])
    assert pauses == []
    assert len(throttled.calls) == 1

    down = ScriptedProvider("p", ProviderUnavailable("p", "down"))
    retrying = RetryingProvider(down, max_retries=2, base_delay_s=0, max_delay_s=0, sleep=sleep)
    with pytest.raises(ProviderUnavailable):
        await retrying.send("t", [], ["13800138000"])
    assert len(down.calls) == 3
