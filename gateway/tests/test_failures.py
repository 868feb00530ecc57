"""Dependencies failing: the user service, Redis, and a bug in the gateway itself."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.infra import ManagedProcess
from gateway.app import create_app
from gateway.tests.conftest import (
    LoginTokens,
    RunningUserService,
    bearer,
    client_for,
    fake_stubs,
    login,
    make_settings,
    signup,
)

pytestmark = pytest.mark.integration

SYSTEM_ERROR = {"code": 5, "msg": "system error", "data": None}


@pytest.fixture
async def redis_outage(redis_server: ManagedProcess) -> AsyncIterator[None]:
    """Redis stopped for the test's body, restarted after (whatever happens)."""
    redis_server.stop()
    try:
        yield
    finally:
        redis_server.start()


async def test_user_service_down_is_a_system_error(
    client: httpx.AsyncClient, user_service: RunningUserService
) -> None:
    await user_service.server.stop(None)

    resp = await client.post(
        "/users/login", json={"email": "alice@example.com", "password": "hello#world123"}
    )

    assert resp.status_code == 200
    assert resp.json() == SYSTEM_ERROR


async def test_user_service_deadline_is_a_system_error(
    redis_url: str, user_service: RunningUserService, redis_client: Any
) -> None:
    app = create_app(make_settings(redis_url, user_service.port, grpc_timeout=0.2))
    user_service.servicer.profile_delay = 1.0
    async with app.router.lifespan_context(app), client_for(app) as client:
        await signup(client, "alice@example.com")
        tokens = await login(client, "alice@example.com")

        resp = await client.get("/users/profile", headers=bearer(tokens.access))

    assert resp.status_code == 200
    assert resp.json() == SYSTEM_ERROR


async def test_profile_of_unknown_user(
    client: httpx.AsyncClient, app: FastAPI, tokens: LoginTokens
) -> None:
    ghost = app.state.runtime.tokens.issue(999, client.headers["User-Agent"])

    resp = await client.get("/users/profile", headers=bearer(ghost.access))

    assert resp.json() == {"code": 4, "msg": "user not found", "data": None}


def _session_store_errors(fallback: str) -> float:
    value = REGISTRY.get_sample_value(
        "webook_gateway_session_store_errors_total", {"operation": "check", "fallback": fallback}
    )
    return value or 0.0


async def test_redis_down_denies_logged_in_routes_and_logs_once_without_fail_static(
    redis_url: str,
    user_service: RunningUserService,
    redis_server: ManagedProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With the fail-static window off, an outage leaves no session the gateway can vouch for
    # (test_session_fail_static.py covers the default window).
    settings = make_settings(redis_url, user_service.port, session_check_fail_static_seconds=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        await signup(client, "alice@example.com")
        tokens = await login(client, "alice@example.com")
        errors_before = _session_store_errors("deny")
        caplog.set_level(logging.INFO, logger="gateway.auth.sessions")
        redis_server.stop()
        try:
            first = await client.get("/users/profile", headers=bearer(tokens.access))
            second = await client.get("/users/profile", headers=bearer(tokens.access))
            # Public routes do not depend on Redis.
            public = await client.post(
                "/users/login", json={"email": "alice@example.com", "password": "hello#world123"}
            )
        finally:
            redis_server.start()
        recovered = await client.get("/users/profile", headers=bearer(tokens.access))

    assert (first.status_code, first.content) == (401, b"")
    assert (second.status_code, second.content) == (401, b"")
    assert public.json()["code"] == 0
    assert recovered.status_code == 200
    outage_logs = [r for r in caplog.records if "session store unreachable" in r.getMessage()]
    assert len(outage_logs) == 1
    assert outage_logs[0].levelno == logging.WARNING
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert _session_store_errors("deny") - errors_before == 2


async def test_redis_down_with_allow_fallback(
    redis_url: str,
    user_service: RunningUserService,
    redis_client: Any,
    redis_server: ManagedProcess,
) -> None:
    settings = make_settings(redis_url, user_service.port, session_check_on_redis_error="allow")
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        await signup(client, "alice@example.com")
        tokens = await login(client, "alice@example.com")
        redis_server.stop()
        try:
            profile = await client.get("/users/profile", headers=bearer(tokens.access))
            logout = await client.post("/users/logout", headers=bearer(tokens.access))
        finally:
            redis_server.start()

    assert profile.status_code == 200
    assert profile.json()["Email"] == "alice@example.com"
    # A logout that cannot be recorded must not pretend to have worked.
    assert logout.json() == SYSTEM_ERROR


class _BrokenUserStub:
    """A stub whose calls hit a bug (not a gRPC failure)."""

    async def Signup(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")


async def test_unexpected_error_is_a_500_envelope_with_cors(
    settings: Any, redis_client: Any
) -> None:
    app = create_app(settings, stubs=fake_stubs(user=_BrokenUserStub()))
    async with app.router.lifespan_context(app), client_for(app) as client:
        resp = await client.post(
            "/users/signup",
            json={
                "email": "bob@example.com",
                "password": "hello#world123",
                "confirmPassword": "hello#world123",
            },
            headers={"Origin": "http://localhost:3000"},
        )

    assert resp.status_code == 500
    assert resp.json() == SYSTEM_ERROR
    assert "secret" not in resp.text
    assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"
