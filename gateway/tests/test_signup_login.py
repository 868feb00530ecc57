"""Signup and login: validation at the edge and the service's business errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.schemas.users import WEAK_PASSWORD_MESSAGE
from gateway.tests.conftest import PASSWORD, RunningUserService, signup
from gateway.tests.fake_user_service import LOCKED_MESSAGE

pytestmark = pytest.mark.integration


def _signup_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "bob@example.com",
        "password": PASSWORD,
        "confirmPassword": PASSWORD,
    }
    body.update(overrides)
    return body


async def test_signup_succeeds(client: httpx.AsyncClient) -> None:
    resp = await client.post("/users/signup", json=_signup_body())

    assert resp.status_code == 200
    assert resp.json() == {"code": 0, "msg": "OK", "data": None}


async def test_signup_ignores_extra_fields_and_bearer_null(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/users/signup",
        json=_signup_body(nickname="ignored"),
        headers={"Authorization": "Bearer null"},
    )

    assert resp.json()["code"] == 0


async def test_malformed_json_is_bad_input(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/users/signup",
        content=b'{"email": "bob@example.com",',
        headers={"Content-Type": "application/json"},
    )

    assert resp.status_code == 200
    assert resp.json() == {"code": 4, "msg": "malformed JSON body", "data": None}


async def test_undecodable_body_is_bad_input(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/users/signup",
        content=b'{"email": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )

    assert resp.status_code == 200
    assert resp.json()["code"] == 4


async def test_body_must_be_an_object(client: httpx.AsyncClient) -> None:
    resp = await client.post("/users/signup", json=["bob@example.com"])

    assert resp.json() == {"code": 4, "msg": "request body must be a JSON object", "data": None}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"email": 42}, "email must be a string", id="wrong-type"),
        pytest.param({"password": None}, "password must be a string", id="null"),
        pytest.param({"email": "not-an-email"}, "invalid email", id="bad-email"),
        pytest.param(
            {"email": "a" * 250 + "@example.com"},
            "email is too long (at most 255 characters)",
            id="long-email",
        ),
        pytest.param(
            {"password": "short#1", "confirmPassword": "short#1"},
            WEAK_PASSWORD_MESSAGE,
            id="weak-short",
        ),
        pytest.param(
            {"password": "nodigits#here", "confirmPassword": "nodigits#here"},
            WEAK_PASSWORD_MESSAGE,
            id="weak-no-digit",
        ),
        pytest.param(
            {"password": "n0special", "confirmPassword": "n0special"},
            WEAK_PASSWORD_MESSAGE,
            id="weak-no-special",
        ),
        pytest.param(
            {"password": "é#1" * 30, "confirmPassword": "é#1" * 30},
            "password must be at most 72 bytes",
            id="password-over-72-bytes",
        ),
        pytest.param(
            {"confirmPassword": PASSWORD + "x"}, "the two passwords do not match", id="mismatch"
        ),
    ],
)
async def test_signup_validation(
    client: httpx.AsyncClient, overrides: dict[str, Any], message: str
) -> None:
    resp = await client.post("/users/signup", json=_signup_body(**overrides))

    assert resp.status_code == 200
    assert resp.json() == {"code": 4, "msg": message, "data": None}


async def test_missing_field_is_named(client: httpx.AsyncClient) -> None:
    resp = await client.post("/users/signup", json={"email": "bob@example.com"})

    assert resp.json() == {"code": 4, "msg": "missing field: password", "data": None}


async def test_empty_body_is_bad_input(client: httpx.AsyncClient) -> None:
    resp = await client.post("/users/signup")

    assert resp.json() == {"code": 4, "msg": "request body is required", "data": None}


async def test_duplicate_email(client: httpx.AsyncClient) -> None:
    await signup(client, "bob@example.com")

    resp = await client.post("/users/signup", json=_signup_body())

    assert resp.status_code == 200
    assert resp.json() == {"code": 401003, "msg": "email already registered", "data": None}


async def test_login_sets_both_token_headers(client: httpx.AsyncClient) -> None:
    await signup(client, "bob@example.com")

    resp = await client.post(
        "/users/login",
        json={"email": "bob@example.com", "password": PASSWORD},
        headers={"Authorization": "Bearer null"},
    )

    assert resp.json() == {"code": 0, "msg": "OK", "data": None}
    access, refresh = resp.headers["x-jwt-token"], resp.headers["x-refresh-token"]
    assert access.count(".") == 2
    assert refresh.count(".") == 2
    assert access != refresh


async def test_login_wrong_password(client: httpx.AsyncClient) -> None:
    await signup(client, "bob@example.com")

    resp = await client.post(
        "/users/login", json={"email": "bob@example.com", "password": "wrong#pass1"}
    )

    assert resp.json() == {"code": 401002, "msg": "wrong email or password", "data": None}
    assert "x-jwt-token" not in resp.headers


async def test_login_unknown_user_looks_like_wrong_password(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/users/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert resp.json() == {"code": 401002, "msg": "wrong email or password", "data": None}


def _logins(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "webook_login_total", {"method": "password", "result": result}
    )
    return value or 0.0


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unknown"])
async def test_login_locked_by_the_throttle_says_so(
    client: httpx.AsyncClient, user_service: RunningUserService, registered: bool
) -> None:
    if registered:
        await signup(client, "carol@example.com")
    user_service.servicer.locked_emails.add("carol@example.com")
    locked_before = _logins("too_many_attempts")

    # Even the right password: the service refuses without checking it.
    resp = await client.post(
        "/users/login", json={"email": "carol@example.com", "password": PASSWORD}
    )

    assert resp.status_code == 200
    assert resp.json() == {"code": 4, "msg": LOCKED_MESSAGE, "data": None}
    assert "x-jwt-token" not in resp.headers
    assert _logins("too_many_attempts") - locked_before == 1
