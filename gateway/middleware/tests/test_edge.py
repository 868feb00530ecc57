"""Edge: settings, the concerns they give, and the layer composed the way the gateway
composes it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import ValidationError

from gateway.middleware.cors import CorsPolicy
from gateway.middleware.edge import Edge
from gateway.middleware.edge_settings import DEFAULT_RATE_LIMITS, EdgeSettings, RateLimitRule
from gateway.middleware.gateway_layer import GatewayLayer
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.tests.conftest import FakeLogin, client_for, sample
from kit.ratelimit import Algorithm, FailurePolicy
from kit.redisx import create_redis

ORIGIN = "http://localhost:3000"


def gateway_like(edge: Edge) -> FastAPI:
    """An app with the edge's layer as gateway/app.py builds it (a stand-in login check)."""
    routes = RouteTemplates()
    public = ["/users/login", "/users/login_sms/code/send", "/healthz"]
    app = FastAPI(
        middleware=[
            edge.layer(routes, cors=CorsPolicy(["http://localhost:*"]), login=FakeLogin(public))
        ]
    )

    @app.post("/users/login")
    async def login() -> dict[str, int]:
        return {"code": 0}

    @app.post("/users/login_sms/code/send")
    async def send_code() -> dict[str, int]:
        return {"code": 0}

    @app.get("/users/profile")
    async def profile() -> dict[str, int]:
        return {"code": 0}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    routes.index(app.routes)
    return app


def local_rules() -> tuple[RateLimitRule, ...]:
    return (
        RateLimitRule(
            name="edge_auth", paths=("/users/login",), key="ip", limit=1, period=60, backend="local"
        ),
        RateLimitRule(
            name="edge_user", paths=("*",), key="user", limit=2, period=60, backend="local"
        ),
    )


def test_defaults_are_valid_and_documented() -> None:
    settings = EdgeSettings()

    assert [r.name for r in settings.rate_limits] == [
        "auth_ip",
        "sms_code_ip",
        "public_ip",
        "search_ip",
        "user",
        "global",
    ]
    assert settings.rate_limits == DEFAULT_RATE_LIMITS
    auth = settings.rate_limits[0]
    # Per-account throttling in the user service carries the brute-force protection; the
    # per-IP rule only slows floods, and an office behind one NAT can live with it.
    assert (auth.limit, auth.period, auth.burst, auth.key) == (60, 60, 20, "ip")
    assert settings.rate_limits[-1].on_backend_error is FailurePolicy.FAIL_OPEN
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.exempt_paths == ("/healthz", "/readyz", "/metrics")


def test_settings_come_from_json() -> None:
    settings = EdgeSettings.model_validate_json(
        """{"trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"], "max_active_requests": null,
            "rate_limits": [{"name": "login", "paths": ["/users/login"], "key": "ip",
                             "algorithm": "sliding_window", "limit": 5, "period": 60,
                             "on_backend_error": "fail_closed", "methods": ["post"]}]}"""
    )

    (login,) = settings.rate_limits
    assert login.algorithm is Algorithm.SLIDING_WINDOW
    assert login.on_backend_error is FailurePolicy.FAIL_CLOSED
    assert login.methods == frozenset({"POST"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32"]
    assert settings.max_active_requests is None


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_limits": [{"name": "x", "paths": ["*"], "key": "ip", "limit": 1, "period": 1}] * 2},
        {
            "rate_limits": [
                {"name": "Bad Name", "paths": ["*"], "key": "ip", "limit": 1, "period": 1}
            ]
        },
        {"rate_limits": [{"name": "x", "paths": [], "key": "ip", "limit": 1, "period": 1}]},
        {"rate_limits": [{"name": "x", "paths": ["*"], "key": "ip", "limit": 0, "period": 1}]},
        {"rate_limits": [{"name": "x", "paths": ["*"], "key": "device", "limit": 1, "period": 1}]},
        {"max_body_bytes": -1},
        {"trusted_proxies": ["not-a-network"]},
        {"unknown_field": 1},
    ],
)
def test_nonsense_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EdgeSettings.model_validate(bad)


def test_the_concerns_are_what_is_enabled() -> None:
    full = Edge(EdgeSettings())
    bare = Edge(EdgeSettings(rate_limits=(), max_active_requests=None, max_body_bytes=None))

    assert full.concurrency is not None
    assert full.concurrency.max_active == 512
    assert full.concurrency.exempt_paths == {"/healthz", "/readyz", "/metrics"}
    assert full.body_limit is not None
    assert full.body_limit.max_bytes == 1024 * 1024
    # Per IP and global with the guards, per user after the login check; in settings order.
    assert [r.name for r in full.ip_rules] == [
        "auth_ip",
        "sms_code_ip",
        "public_ip",
        "search_ip",
        "global",
    ]
    assert [r.name for r in full.user_rules] == ["user"]
    assert (bare.concurrency, bare.body_limit) == (None, None)
    assert (tuple(bare.ip_rules), tuple(bare.user_rules)) == ((), ())
    layer = full.layer(RouteTemplates())
    assert cast(object, layer.cls) is GatewayLayer
    assert layer.kwargs["concurrency"] is full.concurrency
    assert layer.kwargs["ip_rules"] == full.ip_rules
    assert layer.kwargs["login"] is None


async def test_refusals_carry_cors_and_request_id_and_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = gateway_like(Edge(EdgeSettings(rate_limits=local_rules(), max_body_bytes=100)))
    caplog.set_level(logging.INFO, logger="gateway.access")
    counted_before = sample(
        "webook_http_requests_total", route="/users/login", method="POST", status="429"
    )
    headers = {"Origin": ORIGIN}

    async with client_for(app) as client:
        first = await client.post("/users/login", headers=headers)
        refused = await client.post("/users/login", headers={**headers, "X-Request-ID": "req-1"})
        too_big = await client.post("/users/login", headers=headers, content=b"x" * 101)
        user = [
            (await client.get("/users/profile", headers={"X-Test-User": "7"})).status_code
            for _ in range(3)
        ]

    assert first.status_code == 200
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert refused.headers["x-request-id"] == "req-1"
    assert refused.headers["retry-after"] == "60"
    assert too_big.status_code == 413
    assert too_big.headers["access-control-allow-origin"] == ORIGIN
    assert user == [200, 200, 429]
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert [(r.status, r.route) for r in lines][:3] == [  # type: ignore[attr-defined]
        (200, "/users/login"),
        (429, "/users/login"),
        (413, "/users/login"),
    ]
    assert lines[1].request_id == "req-1"  # type: ignore[attr-defined]
    assert lines[-1].user_id == 7  # type: ignore[attr-defined]
    assert (
        sample("webook_http_requests_total", route="/users/login", method="POST", status="429")
        == counted_before + 1
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    await client.flushdb()
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.mark.integration
async def test_default_rules_on_redis(redis: aioredis.Redis) -> None:
    edge = Edge(EdgeSettings())
    edge.open(redis)
    app = gateway_like(edge)

    async with client_for(app, ip="198.51.100.20") as client:
        logins = [(await client.post("/users/login")).status_code for _ in range(21)]
        codes = [await client.post("/users/login_sms/code/send") for _ in range(6)]
        health = [(await client.get("/healthz")).status_code for _ in range(20)]
    await edge.aclose()

    assert logins == [200] * 20 + [429]  # burst 20
    assert [r.status_code for r in codes] == [200] * 5 + [429]
    assert 55 <= int(codes[-1].headers["retry-after"]) <= 60
    assert health == [200] * 20
    keys = sorted([k.decode() async for k in redis.scan_iter(match="webook:ratelimit:*")])
    assert keys == [
        "webook:ratelimit:auth_ip:token_bucket:198.51.100.20",
        "webook:ratelimit:global:sliding_window_approx:all",
        "webook:ratelimit:sms_code_ip:sliding_window:198.51.100.20",
    ]
