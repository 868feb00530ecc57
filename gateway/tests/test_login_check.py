"""What the login check hands to the routes: request.state, the contextvar, the log context."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.datastructures import Headers

from gateway.auth.principal import bearer_token, current_principal
from gateway.middleware.login import _credentials
from gateway.tests.conftest import LoginTokens, bearer
from kit.logging import log_context

pytestmark = pytest.mark.integration


async def _whoami(request: Request) -> dict[str, Any]:
    principal = current_principal.get()
    return {
        "state": [request.state.uid, request.state.ssid],
        "contextvar": [principal.uid, principal.ssid] if principal else None,
        "log_user_id": (log_context.get() or {}).get("user_id"),
    }


async def test_caller_is_available_to_routes(
    app: FastAPI, client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    app.add_api_route("/test/whoami", _whoami, methods=["GET"])

    resp = await client.get("/test/whoami", headers=bearer(tokens.access))

    body = resp.json()
    assert body["state"][0] == body["contextvar"][0] == body["log_user_id"] == 1
    assert body["state"][1] == body["contextvar"][1]
    # Nothing leaks past the request.
    assert current_principal.get() is None
    assert (log_context.get() or {}).get("user_id") is None


async def test_unknown_paths_need_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.get("/no/such/page")).status_code == 401


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer  abc ", "abc"),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer a"), (b"user-agent", b"ua/1")],
        [(b"user-agent", b"first"), (b"authorization", b"Bearer a"), (b"user-agent", b"second")],
        [(b"authorization", b"Bearer one"), (b"authorization", b"Bearer two")],
        [(b"authorization", b""), (b"user-agent", b"")],
        [(b"accept", b"*/*"), (b"user-agent", "\u00e9t\u00e9".encode("latin-1"))],
    ],
)
def test_credentials_read_as_headers_get_reads_them(headers: list[tuple[bytes, bytes]]) -> None:
    expected = Headers(raw=headers)
    assert _credentials({"headers": headers}) == (
        expected.get("authorization"),
        expected.get("user-agent", ""),
    )
