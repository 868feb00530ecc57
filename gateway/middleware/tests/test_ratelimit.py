"""Rate limits (run by the gateway's layer): rules by IP, user and globally; 429s; metrics;
Redis outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from devstack.infra import ManagedProcess
from gateway.middleware.client_ip import TrustedProxies
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.edge_settings import KeyBy, RateLimitRule
from gateway.middleware.ratelimit import RateLimits
from gateway.middleware.tests.conftest import FakeLogin, client_for, layered_app, sample
from kit.ratelimit import Algorithm, FailurePolicy
from kit.ratelimit.tests.conftest import ManualClock
from kit.redisx import create_redis


def rule(name: str, paths: Sequence[str], key: str = "ip", **fields: Any) -> RateLimitRule:
    values: dict[str, Any] = {
        "name": name,
        "paths": tuple(paths),
        "key": key,
        "limit": 2,
        "period": 60,
        "backend": "local",
        **fields,
    }
    return RateLimitRule.model_validate(values)


OUTER: tuple[KeyBy, ...] = ("ip", "global")
INNER: tuple[KeyBy, ...] = ("user",)


def limits_for(*rules: RateLimitRule, **options: Any) -> RateLimits:
    return RateLimits(
        rules, proxies=TrustedProxies(["10.0.0.0/8"]), exempt_paths=["/healthz"], **options
    )


def outer_app(limits: RateLimits, **concerns: Any) -> Starlette:
    """The per-IP and global rules checked, no login check (every path public)."""
    return layered_app(limits=limits, ip_rules=limits.rules_for(OUTER), **concerns)


async def statuses(client: httpx.AsyncClient, path: str, n: int, **kwargs: Any) -> list[int]:
    return [(await client.get(path, **kwargs)).status_code for _ in range(n)]


async def test_per_ip_rule_answers_429_with_retry_after() -> None:
    limits = limits_for(rule("login_ip", ["/users/login"], limit=3, period=60, burst=2))
    app = outer_app(limits)
    async with (
        client_for(app, ip="198.51.100.1") as first,
        client_for(app, ip="198.51.100.2") as second,
    ):
        assert await statuses(first, "/users/login", 2) == [200, 200]
        refused = await first.get("/users/login")
        assert await statuses(second, "/users/login", 3) == [200, 200, 429]
        other_route = await first.get("/users/profile")

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # one token every 20 s
    assert refused.json() == {
        "code": 429,
        "msg": "too many requests, please retry later",
        "data": None,
    }
    assert other_route.status_code == 200


async def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    app = outer_app(limits_for(rule("login_ip", ["/users/login"], limit=1)))
    async with (
        client_for(app, ip="10.1.1.1") as proxy,
        client_for(app, ip="198.51.100.5") as direct,
    ):
        behind = [
            (await proxy.get("/users/login", headers={"X-Forwarded-For": ip})).status_code
            for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.1")
        ]
        spoofing = [
            (await direct.get("/users/login", headers={"X-Forwarded-For": ip})).status_code
            for ip in ("1.1.1.1", "2.2.2.2")
        ]

    assert behind == [200, 200, 429]
    assert spoofing == [200, 429]


async def test_globs_methods_and_exempt_paths() -> None:
    limits = limits_for(
        rule("items", ["/items/*"], methods={"post"}, limit=1), rule("all", ["*"], limit=3)
    )
    app = outer_app(limits)
    async with client_for(app) as client:
        gets = await statuses(client, "/items/1", 3)
        health = await statuses(client, "/healthz", 5)
        posts = [(await client.post("/items/2")).status_code for _ in range(2)]

    assert gets == [200, 200, 200]  # "items" is for POST only; "all" counts the three
    assert health == [200] * 5
    assert posts == [429, 429]  # "all" is exhausted, so "items" is never reached


async def test_user_rules_run_inside_the_login_check_and_skip_anonymous_requests() -> None:
    limits = limits_for(rule("user", ["*"], key="user", limit=2))
    app = outer_app(limits, login=FakeLogin(["/users/login"]), user_rules=limits.rules_for(INNER))
    async with client_for(app) as client:
        alice = await statuses(client, "/users/profile", 3, headers={"X-Test-User": "1"})
        bob = await statuses(client, "/users/profile", 2, headers={"X-Test-User": "2"})
        anonymous = await statuses(client, "/users/login", 4)

    assert alice == [200, 200, 429]
    assert bob == [200, 200]
    assert anonymous == [200] * 4


async def test_global_rule_counts_every_client_together() -> None:
    app = outer_app(limits_for(rule("global", ["*"], key="global", limit=3)))
    async with client_for(app, ip="198.51.100.1") as one, client_for(app, ip="198.51.100.2") as two:
        codes = [(await c.get("/items/1")).status_code for c in (one, two, one, two)]

    assert codes == [200, 200, 200, 429]


async def test_rejections_are_counted_by_rule() -> None:
    app = outer_app(limits_for(rule("counted", ["/users/login"], limit=1)))
    before = {
        r: sample("webook_ratelimit_requests_total", rule="counted", result=r)
        for r in ("allowed", "rejected")
    }
    async with client_for(app) as client:
        await statuses(client, "/users/login", 3)

    assert (
        sample("webook_ratelimit_requests_total", rule="counted", result="allowed")
        == before["allowed"] + 1
    )
    assert (
        sample("webook_ratelimit_requests_total", rule="counted", result="rejected")
        == before["rejected"] + 2
    )


async def test_429_carries_cors_headers() -> None:
    limits = limits_for(rule("login_ip", ["/users/login"], limit=1))
    app = outer_app(limits, cors=CorsPolicy(["http://localhost:*"]))
    headers = {"Origin": "http://localhost:3000"}
    async with client_for(app) as client:
        await client.post("/users/login", headers=headers)
        refused = await client.post("/users/login", headers=headers)
        preflight = await client.options("/users/login", headers=headers)

    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert preflight.status_code == 204  # preflights never reach the limiter


async def test_local_limits_refill_with_the_clock(clock: ManualClock) -> None:
    app = outer_app(
        limits_for(rule("tb", ["/users/login"], limit=60, period=60, burst=1), clock=clock)
    )
    async with client_for(app) as client:
        assert await statuses(client, "/users/login", 2) == [200, 429]
        clock.advance(1)
        assert await statuses(client, "/users/login", 2) == [200, 429]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# --- Redis-backed rules -------------------------------------------------------------


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # A generous timeout: a slow answer on a loaded machine must not count as an outage
    # (the rules would then fall back to their per-replica limiters). A stopped Redis
    # refuses connections at once, so the outage test does not wait for it.
    client = create_redis(redis_url, timeout=10.0)
    await client.flushdb()
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.mark.integration
@pytest.mark.parametrize("batching", [False, True])
async def test_redis_rules_hold_across_replicas(redis: aioredis.Redis, batching: bool) -> None:
    replicas = []
    for _ in range(2):
        limits = limits_for(
            rule(
                "cluster",
                ["*"],
                key="global",
                limit=30,
                period=60,
                backend="redis",
                algorithm=Algorithm.SLIDING_WINDOW,
            ),
            batching=batching,
        )
        limits.open(redis)
        replicas.append(limits)
    clients = [client_for(outer_app(limits)) for limits in replicas]
    errors_before = sample("webook_ratelimit_backend_errors_total", rule="cluster", policy="local")

    responses = await asyncio.gather(*(clients[n % 2].get("/items/1") for n in range(100)))

    # Redis decided every check (none went to a replica's own limiter)...
    assert (
        sample("webook_ratelimit_backend_errors_total", rule="cluster", policy="local")
        == errors_before
    )
    # ...so the two replicas admitted 30 together.
    assert sum(r.status_code == 200 for r in responses) == 30
    assert {r.status_code for r in responses} == {200, 429}
    for client in clients:
        await client.aclose()
    for limits in replicas:
        await limits.aclose()


async def test_redis_rules_use_their_policy_until_opened() -> None:
    limits = limits_for(
        rule(
            "open", ["/items/*"], backend="redis", limit=1, on_backend_error=FailurePolicy.FAIL_OPEN
        ),
        rule("local", ["/users/*"], backend="redis", limit=1, on_backend_error=FailurePolicy.LOCAL),
    )
    async with client_for(outer_app(limits)) as client:
        assert await statuses(client, "/items/1", 3) == [200, 200, 200]
        assert await statuses(client, "/users/profile", 2) == [200, 429]


@pytest.mark.integration
async def test_redis_outage_each_policy_as_configured_logged_once(
    redis: aioredis.Redis,
    redis_server: ManagedProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = limits_for(
        rule(
            "fail_open",
            ["/items/*"],
            backend="redis",
            limit=2,
            on_backend_error=FailurePolicy.FAIL_OPEN,
        ),
        rule(
            "fail_closed",
            ["/users/profile"],
            backend="redis",
            limit=2,
            on_backend_error=FailurePolicy.FAIL_CLOSED,
        ),
        rule(
            "fallback",
            ["/users/login"],
            backend="redis",
            limit=2,
            on_backend_error=FailurePolicy.LOCAL,
        ),
        retry_interval=0.2,
    )
    limits.open(redis)
    caplog.set_level(logging.INFO, logger="kit.ratelimit.resilient")
    errors_before = {
        name: sample(
            "webook_ratelimit_backend_errors_total",
            rule=name,
            policy=name if name != "fallback" else "local",
        )
        for name in ("fail_open", "fail_closed", "fallback")
    }
    async with client_for(outer_app(limits)) as client:
        assert await statuses(client, "/items/1", 3) == [200, 200, 429]  # Redis counts
        redis_server.stop()
        try:
            during = {
                path: await statuses(client, path, 4)
                for path in ("/items/1", "/users/profile", "/users/login")
            }
            health = await client.get("/healthz")
        finally:
            redis_server.start()
        await asyncio.sleep(0.25)  # the retry interval
        after = await statuses(client, "/users/login", 3)

    assert during == {
        "/items/1": [200, 200, 200, 200],
        "/users/profile": [429, 429, 429, 429],
        "/users/login": [200, 200, 429, 429],  # the in-process limiter, fresh
    }
    assert health.status_code == 200
    assert after == [200, 200, 429]  # Redis again (restarted empty)
    warnings = [
        r
        for r in caplog.records
        if r.name == "kit.ratelimit.resilient" and r.levelname == "WARNING"
    ]
    assert sorted(r.limiter for r in warnings) == ["fail_closed", "fail_open", "fallback"]  # type: ignore[attr-defined]
    recoveries = [r for r in caplog.records if r.getMessage() == "rate limit backend is back"]
    assert [r.limiter for r in recoveries] == ["fallback"]  # type: ignore[attr-defined]
    assert (
        sample("webook_ratelimit_backend_errors_total", rule="fail_closed", policy="fail_closed")
        == errors_before["fail_closed"] + 4
    )
    assert sample("webook_ratelimit_requests_total", rule="fail_closed", result="error") >= 4
    await limits.aclose()
