"""CORS: preflights before the login check, headers on every answer, none for strangers."""

from __future__ import annotations

import httpx
import pytest

from gateway.middleware.cors import OriginPolicy

pytestmark = pytest.mark.integration

ORIGIN = "http://localhost:3000"


async def test_preflight_on_logged_in_route(client: httpx.AsyncClient) -> None:
    resp = await client.options(
        "/users/profile",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )

    assert 200 <= resp.status_code < 300
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert resp.headers["access-control-allow-credentials"] == "true"
    allowed_headers = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "Origin" in resp.headers["vary"]


async def test_cors_headers_on_a_401(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/profile", headers={"Origin": "http://127.0.0.1:5173"})

    assert resp.status_code == 401
    assert resp.headers["access-control-allow-origin"] == "http://127.0.0.1:5173"
    assert resp.headers["access-control-allow-credentials"] == "true"
    exposed = resp.headers["access-control-expose-headers"].lower()
    assert "x-jwt-token" in exposed
    assert "x-refresh-token" in exposed


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://localhost:3000.evil.example",
        "http://localhost:3000/path",
        "null",
    ],
)
async def test_disallowed_origin_gets_no_cors_headers(
    client: httpx.AsyncClient, origin: str
) -> None:
    preflight = await client.options(
        "/users/profile", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
    )
    simple = await client.post(
        "/users/login", json={"email": "a@example.com", "password": "x"}, headers={"Origin": origin}
    )

    for resp in (preflight, simple):
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


def test_origin_patterns_are_globs_on_the_whole_origin() -> None:
    policy = OriginPolicy(["https://*.webook.example", "http://localhost:*"])

    assert policy.allows("https://app.webook.example")
    assert policy.allows("http://localhost:8081")
    assert not policy.allows("https://webook.example.evil.com")
    assert not policy.allows("http://app.webook.example")
    assert not policy.allows("http://localhost")
