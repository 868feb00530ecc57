"""Readiness apart from liveness, in process: ``/readyz`` follows the lifespan and the drain.

``test_drain.py`` runs ``python -m gateway`` and sends it SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from devstack.infra import free_port
from gateway.app import GatewayApp, create_app
from gateway.middleware.edge_settings import EdgeSettings, RateLimitRule
from gateway.readiness import Readiness
from gateway.settings import DEFAULT_DRAIN_SECONDS
from gateway.tests.conftest import client_for, fake_stubs, make_settings
from kit.config import Mode

pytestmark = pytest.mark.integration

# One request per IP per minute, in process: a second /readyz would be refused if counted.
ONE_PER_MINUTE = RateLimitRule(
    name="tight", paths=("*",), key="ip", limit=1, period=60, backend="local"
)


@pytest.fixture
def app(redis_url: str, redis_client: aioredis.Redis) -> GatewayApp:
    """A gateway (not started) with a tight per-IP rate limit."""
    edge = EdgeSettings(rate_limits=(ONE_PER_MINUTE,))
    return create_app(make_settings(redis_url, free_port(), edge=edge), stubs=fake_stubs())


@pytest.fixture
async def http(app: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` (whose lifespan the test runs)."""
    async with client_for(app) as client:
        yield client


def gauge(name: str) -> float | None:
    """A gauge's value in the default registry."""
    return REGISTRY.get_sample_value(name)


async def test_ready_only_between_start_and_stop(app: GatewayApp, http: httpx.AsyncClient) -> None:
    before = await http.get("/readyz")
    assert (before.status_code, before.json()) == (503, {"status": "starting"})
    assert (await http.get("/healthz")).status_code == 200
    assert gauge("webook_gateway_ready") == 0

    async with app.router.lifespan_context(app):
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert (gauge("webook_gateway_ready"), gauge("webook_gateway_draining")) == (1, 0)
        assert "connection" not in ready.headers

    after = await http.get("/readyz")
    assert (after.status_code, after.json()) == (503, {"status": "stopped"})
    assert gauge("webook_gateway_ready") == 0


async def test_draining_is_not_ready_but_serves_and_closes_connections(
    app: GatewayApp, http: httpx.AsyncClient
) -> None:
    async with app.router.lifespan_context(app):
        readiness: Readiness = app.state.readiness
        readiness.begin_drain()

        readyz = await http.get("/readyz")
        assert (readyz.status_code, readyz.json()) == (503, {"status": "draining"})
        assert (gauge("webook_gateway_ready"), gauge("webook_gateway_draining")) == (0, 1)
        # Still served: liveness, and the API (here the login check's 401).
        healthz = await http.get("/healthz")
        assert healthz.status_code == 200
        profile = await http.get("/users/profile")
        assert profile.status_code == 401
        for answer in (readyz, healthz, profile):
            assert answer.headers["connection"] == "close"


async def test_probes_need_no_login_and_are_never_rate_limited(
    app: GatewayApp, http: httpx.AsyncClient
) -> None:
    async with app.router.lifespan_context(app):
        for _ in range(5):
            answer = await http.get("/readyz", headers={"Authorization": "Bearer null"})
            assert answer.status_code == 200
        # The same rule does refuse an API route's second request.
        assert (await http.get("/users/profile")).status_code == 401
        assert (await http.get("/users/profile")).status_code == 429


def test_drain_default_is_off_in_test_mode_only(redis_url: str) -> None:
    test_mode = make_settings(redis_url, free_port())
    assert test_mode.drain_seconds == 0
    dev_mode = make_settings(redis_url, free_port(), mode=Mode.DEV)
    assert dev_mode.drain_seconds == DEFAULT_DRAIN_SECONDS
    explicit = make_settings(redis_url, free_port(), shutdown_drain_seconds=2.5)
    assert explicit.drain_seconds == 2.5
