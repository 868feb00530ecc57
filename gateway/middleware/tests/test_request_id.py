"""Request ids (run by the gateway's layer): made or kept, returned, in the state, the log
context and the access log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.middleware.request_id import RequestIds, current_request_id
from gateway.middleware.tests.conftest import client_for, layered_app
from kit.logging import log_context


async def where_is_my_id(request: Request) -> Response:
    return JSONResponse(
        {
            "state": request.state.request_id,
            "contextvar": current_request_id.get(),
            "log_context": (log_context.get() or {}).get("request_id"),
        }
    )


def app_with(**options: Any) -> Starlette:
    return layered_app([Route("/where", where_is_my_id)], request_ids=RequestIds(**options))


async def test_a_new_id_everywhere_when_none_comes_in() -> None:
    async with client_for(app_with()) as client:
        resp = await client.get("/where")

    request_id = resp.headers["x-request-id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    assert resp.json() == {"state": request_id, "contextvar": request_id, "log_context": request_id}
    assert current_request_id.get() is None
    assert log_context.get() is None


async def test_a_well_formed_incoming_id_is_kept() -> None:
    async with client_for(app_with()) as client:
        resp = await client.get("/where", headers={"X-Request-ID": "edge-7f3a:01/2+="})

    assert resp.headers["x-request-id"] == "edge-7f3a:01/2+="
    assert resp.json()["state"] == "edge-7f3a:01/2+="


@pytest.mark.parametrize("incoming", [b"has space", b"x" * 129, b"", b"<script>", "é".encode()])
async def test_a_malformed_incoming_id_is_replaced(incoming: bytes) -> None:
    async with client_for(app_with()) as client:
        resp = await client.get("/where", headers={b"X-Request-ID": incoming})

    assert resp.headers["x-request-id"].encode() != incoming
    assert len(resp.headers["x-request-id"]) == 32


async def test_incoming_ids_can_be_ignored_and_the_header_renamed() -> None:
    app = app_with(header="X-Correlation-ID", trust_incoming=False)
    async with client_for(app) as client:
        resp = await client.get("/where", headers={"X-Correlation-ID": "mine"})

    assert resp.headers["x-correlation-id"] != "mine"
    assert "x-request-id" not in resp.headers


async def test_the_access_log_line_carries_the_id(caplog: pytest.LogCaptureFixture) -> None:
    app = layered_app()
    caplog.set_level(logging.INFO, logger="gateway.access")

    async with client_for(app) as client:
        resp = await client.get("/items/3", headers={"X-Request-ID": "abc-123"})

    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert resp.headers["x-request-id"] == "abc-123"
    assert record.request_id == "abc-123"  # type: ignore[attr-defined]
    assert record.route == "/items/{item_id}"  # type: ignore[attr-defined]
