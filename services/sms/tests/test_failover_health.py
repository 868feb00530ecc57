"""Failover over the real vendor clients: each health detector takes a misbehaving provider
out of rotation, traffic moves to the other one, and the provider returns after a cool-down.
Also the Redis rate limit shared by every instance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.sms.metrics import SmsMetrics
from services.sms.providers import build_client, build_provider_chain
from services.sms.providers.failover import FailoverProvider
from services.sms.providers.health import HealthPolicy
from services.sms.providers.port import AllProvidersFailed
from services.sms.settings import HealthSettings, RetrySettings
from services.sms.tests.fakes import (
    FakeAliyun,
    FakeServer,
    FakeTencent,
    aliyun_settings,
    tencent_settings,
)

pytestmark = pytest.mark.integration

COOLDOWN_S = 30.0
# Every detector off; each test turns one on.
QUIET = HealthPolicy(
    consecutive_timeouts=0,
    consecutive_throttles=0,
    latency_rise=0,
    long_tail_ratio=0,
    error_rate=0,
    cooldown_s=COOLDOWN_S,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


class SkippableClock:
    """``time.monotonic`` plus an offset: tests skip a cool-down instead of sleeping it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def skip_cooldown(self) -> None:
        self.offset += COOLDOWN_S


def failover_over_fakes(
    policy: HealthPolicy,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
    clock: SkippableClock,
) -> FailoverProvider:
    return FailoverProvider(
        [
            build_client(tencent_settings(tencent_server.endpoint), http),
            build_client(aliyun_settings(aliyun_server.endpoint), http),
        ],
        policy,
        SmsMetrics(CollectorRegistry()),
        clock=clock,
    )


async def send_until(failover: FailoverProvider, done: Callable[[], bool], limit: int = 40) -> None:
    for index in range(limit):
        if done():
            return
        await failover.send("login_code", [f"m{index}"], ["13800138000"])
    assert done(), "condition not reached"


def _slow(tencent: FakeTencent, seconds: float) -> None:
    tencent.delay_s = seconds


SCENARIOS: dict[str, tuple[HealthPolicy, Callable[[FakeTencent], None], str]] = {
    "timeouts": (
        replace(QUIET, consecutive_timeouts=2),
        lambda t: _slow(t, 0.6),
        "consecutive timeouts",
    ),
    "latency_rise": (
        replace(
            QUIET, latency_baseline=4, latency_recent=3, latency_rise=0.2, latency_floor_s=0.06
        ),
        lambda t: _slow(t, 0.15),
        "average latency rose",
    ),
    "long_tail": (
        replace(
            QUIET,
            long_tail_threshold_s=0.1,
            long_tail_ratio=0.1,
            long_tail_window=10,
            min_samples=5,
        ),
        lambda t: _slow(t, 0.15),
        "slower than",
    ),
    "error_rate": (
        replace(QUIET, error_rate=0.5, error_window=6, min_samples=4),
        lambda t: setattr(t, "mode", "error"),
        "of sends failed",
    ),
    "throttling": (
        replace(QUIET, consecutive_throttles=2),
        lambda t: setattr(t, "mode", "throttle"),
        "throttled",
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_detector_moves_traffic_and_provider_returns_after_cooldown(
    scenario: str,
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> None:
    policy, misbehave, reason = SCENARIOS[scenario]
    clock = SkippableClock()
    failover = failover_over_fakes(policy, tencent_server, aliyun_server, http, clock)
    health = failover.health("tencent")

    # A baseline while tencent behaves (the latency detectors need one).
    for index in range(10):
        await failover.send("login_code", [f"b{index}"], ["13800138000"])
    assert tencent.deliveries
    assert aliyun.deliveries

    misbehave(tencent)
    await send_until(failover, lambda: not health.healthy)
    assert reason in health.reason
    assert failover.health("aliyun").healthy

    # While tencent cools down every message goes to aliyun.
    seen, delivered = tencent.requests, len(aliyun.deliveries)
    for index in range(6):
        result = await failover.send("login_code", [f"x{index}"], ["13800138000"])
        assert result.provider == "aliyun"
    assert tencent.requests == seen
    assert len(aliyun.deliveries) == delivered + 6

    # Tencent recovers; after the cool-down one probe brings it back into rotation.
    tencent.reset()
    clock.skip_cooldown()
    await send_until(failover, lambda: health.healthy and len(tencent.deliveries) >= 2)


async def test_probe_failure_starts_another_cooldown(
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> None:
    clock = SkippableClock()
    failover = failover_over_fakes(
        replace(QUIET, error_rate=0.5, error_window=4, min_samples=2),
        tencent_server,
        aliyun_server,
        http,
        clock,
    )
    tencent.mode = "error"
    health = failover.health("tencent")
    await send_until(failover, lambda: not health.healthy)
    clock.skip_cooldown()
    seen = tencent.requests
    await send_until(failover, lambda: tencent.requests > seen)
    assert tencent.requests == seen + 1
    assert not health.healthy
    assert "probe failed" in health.reason


async def test_rate_limit_is_shared_across_instances_and_moves_traffic(
    redis_client: aioredis.Redis,
    redis_url: str,
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> None:
    configs = [
        tencent_settings(tencent_server.endpoint, rate_limit=3, rate_window_s=30),
        aliyun_settings(aliyun_server.endpoint),
    ]
    registry = CollectorRegistry()
    metrics = SmsMetrics(registry)
    chains = []
    clients = []
    for _ in range(2):
        client = aioredis.Redis.from_url(redis_url)
        clients.append(client)
        chains.append(
            build_provider_chain(
                configs,
                health=HealthSettings(),
                retry=RetrySettings(max_retries=0),
                http=http,
                redis=client,
                metrics=metrics,
            )
        )
    try:
        for index in range(12):
            chain = chains[index % 2]
            await chain.provider.send("login_code", [f"r{index}"], ["13800138000"])
        # Two "instances" share one budget of 3 tencent sends per window.
        assert len(tencent.deliveries) == 3
        assert len(aliyun.deliveries) == 9
        assert chains[0].failover.health("tencent").healthy
        limited = registry.get_sample_value(
            "webook_sms_send_total", {"provider": "tencent", "result": "ratelimited"}
        )
        assert limited is not None
        assert limited >= 3

        only_tencent = build_provider_chain(
            configs[:1],
            health=HealthSettings(),
            retry=RetrySettings(max_retries=3),
            http=http,
            redis=clients[0],
            metrics=metrics,
        )
        with pytest.raises(AllProvidersFailed) as failed:
            await only_tencent.provider.send("login_code", ["z"], ["13800138000"])
        assert not failed.value.worth_backoff_retry
    finally:
        for client in clients:
            await client.aclose(close_connection_pool=True)
