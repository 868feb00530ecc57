"""The walking skeleton, end to end: browser-style HTTP → gateway → gRPC → user service → SQL.

Every test talks to real processes started by ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.conftest import USER_AGENT, RunningStack

pytestmark = pytest.mark.e2e

PASSWORD = "hello#world123"


def _email() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}@Example.COM"


async def _signup_and_login(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = _email()
    answer = await client.post(
        "/users/signup", json={"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    )
    assert answer.status_code == 200
    assert answer.json()["code"] == 0, answer.json()
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["code"] == 0, login.json()
    tokens = {
        "access": login.headers["x-jwt-token"],
        "refresh": login.headers["x-refresh-token"],
    }
    return email, tokens


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_signup_login_profile_edit_refresh_logout(client: httpx.AsyncClient) -> None:
    email, tokens = await _signup_and_login(client)

    profile = await client.get("/users/profile", headers=_bearer(tokens["access"]))
    assert profile.status_code == 200
    body = profile.json()
    assert set(body) == {"Email", "Phone", "Nickname", "Birthday", "AboutMe"}
    assert body["Email"].lower() == email.lower()

    edit = await client.post(
        "/users/edit",
        headers=_bearer(tokens["access"]),
        json={"nickname": "小明", "birthday": "1990-05-17", "aboutMe": "writes about 微服务"},
    )
    assert edit.status_code == 200
    assert edit.json()["code"] == 0, edit.json()
    profile = (await client.get("/users/profile", headers=_bearer(tokens["access"]))).json()
    assert (profile["Nickname"], profile["Birthday"], profile["AboutMe"]) == (
        "小明",
        "1990-05-17",
        "writes about 微服务",
    )

    refreshed = await client.post("/users/refresh_token", headers=_bearer(tokens["refresh"]))
    assert refreshed.status_code == 200
    assert refreshed.json()["code"] == 0
    new_access = refreshed.headers["x-jwt-token"]
    new_refresh = refreshed.headers["x-refresh-token"]
    assert (await client.get("/users/profile", headers=_bearer(new_access))).status_code == 200
    # The old refresh token was rotated out.
    replay = await client.post("/users/refresh_token", headers=_bearer(tokens["refresh"]))
    assert replay.status_code == 401

    logout = await client.post("/users/logout", headers=_bearer(new_access))
    assert logout.status_code == 200
    assert logout.json()["code"] == 0
    after = await client.get("/users/profile", headers=_bearer(new_access))
    assert after.status_code == 401
    assert after.content == b""
    again = await client.post("/users/refresh_token", headers=_bearer(new_refresh))
    assert again.status_code == 401


async def test_duplicate_email_is_a_business_error(client: httpx.AsyncClient) -> None:
    email, _ = await _signup_and_login(client)
    again = await client.post(
        "/users/signup",
        json={"email": email.upper(), "password": PASSWORD, "confirmPassword": PASSWORD},
    )
    assert again.status_code == 200
    assert again.json()["code"] == 401003


async def test_wrong_password_and_unknown_user(client: httpx.AsyncClient) -> None:
    email, _ = await _signup_and_login(client)
    wrong = await client.post("/users/login", json={"email": email, "password": "nope#12345"})
    assert wrong.json()["code"] == 401002
    assert "x-jwt-token" not in wrong.headers
    unknown = await client.post("/users/login", json={"email": _email(), "password": PASSWORD})
    assert unknown.json()["code"] == 401002


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"email": 5, "password": [], "confirmPassword": null}',
        b'{"email": "a@b.co"}',
        b'{"email": "not-an-email", "password": "x#1yyyyyy", "confirmPassword": "x#1yyyyyy"}',
        b'{"email": "a@b.co", "password": "short", "confirmPassword": "short"}',
        b'{"email": "a@b.co", "password": "hello#world123", "confirmPassword": "hello#world124"}',
    ],
)
async def test_bad_signup_input_is_code_4_never_500(
    client: httpx.AsyncClient, payload: bytes
) -> None:
    answer = await client.post(
        "/users/signup", content=payload, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code in (200, 400)
    assert answer.json()["code"] == 4
    assert answer.json()["msg"]


async def test_token_from_another_user_agent_is_refused(client: httpx.AsyncClient) -> None:
    _, tokens = await _signup_and_login(client)
    stolen = await client.get(
        "/users/profile", headers={**_bearer(tokens["access"]), "User-Agent": "curl/8.0"}
    )
    assert stolen.status_code == 401
    own = await client.get("/users/profile", headers=_bearer(tokens["access"]))
    assert own.status_code == 200
    assert own.request.headers["User-Agent"] == USER_AGENT


async def test_refresh_and_access_tokens_are_not_interchangeable(
    client: httpx.AsyncClient,
) -> None:
    _, tokens = await _signup_and_login(client)
    as_access = await client.get("/users/profile", headers=_bearer(tokens["refresh"]))
    assert as_access.status_code == 401
    as_refresh = await client.post("/users/refresh_token", headers=_bearer(tokens["access"]))
    assert as_refresh.status_code == 401


async def test_cors_preflight_and_headers_on_401(client: httpx.AsyncClient) -> None:
    origin = "http://localhost:3000"
    preflight = await client.options(
        "/users/profile",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert 200 <= preflight.status_code < 300
    assert preflight.headers["access-control-allow-origin"] == origin
    denied = await client.get(
        "/users/profile", headers={"Origin": origin, "Authorization": "Bearer null"}
    )
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == origin
    assert denied.headers["access-control-allow-credentials"] == "true"


async def test_health_and_metrics(client: httpx.AsyncClient, stack: RunningStack) -> None:
    assert (await client.get("/healthz")).status_code == 200
    await client.post("/users/login", json={"email": _email(), "password": PASSWORD})
    metrics = (await client.get("/metrics")).text
    assert 'webook_http_requests_total{method="POST",route="/users/login",status="200"}' in metrics
    assert stack.user.alive()
    assert stack.gateway.alive()
