"""The body size limit (run by the gateway's layer): declared lengths refused up front,
chunked bodies counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.infra import free_port
from gateway.errors import install_error_handlers
from gateway.middleware.body_limit import BodyLimit
from gateway.middleware.gateway_layer import GatewayLayer
from gateway.middleware.request_id import RequestIds
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.tests.conftest import client_for, layered_app, sample

LIMIT = 64 * 1024


def layer_options() -> dict[str, Any]:
    """The layer's options: the body limit alone."""
    return {"routes": RouteTemplates(), "request_ids": RequestIds(), "body_limit": BodyLimit(LIMIT)}


def around(app: ASGIApp) -> GatewayLayer:
    """``app`` (a raw ASGI app) behind the layer."""
    return GatewayLayer(app, **layer_options())


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    """A body without Content-Length: httpx sends it chunked."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece
        await asyncio.sleep(0)


def rejected() -> float:
    return sample("webook_http_rejected_total", reason="body_too_large")


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    reached = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    before = rejected()
    async with client_for(around(app)) as client:
        resp = await client.post("/upload", content=b"x" * (LIMIT + 1))

    assert resp.status_code == 413
    assert resp.json() == {"code": 413, "msg": "request body too large", "data": None}
    assert reached == []
    assert rejected() == before + 1


async def test_a_chunked_body_is_stopped_once_it_crosses_the_limit() -> None:
    app = layered_app(body_limit=BodyLimit(LIMIT))
    before = rejected()
    async with client_for(app) as client:
        big = await client.post("/upload", content=chunks(4 * LIMIT))
        exact = await client.post("/upload", content=chunks(LIMIT))
        small = await client.post("/upload", content=b"hello")

    # Starlette's HTTPException handler answers inside the app.
    assert big.status_code == 413
    assert big.text == "request body too large"
    assert exact.json() == {"length": LIMIT}
    assert small.json() == {"length": 5}
    assert rejected() == before + 1


async def test_a_raw_asgi_app_gets_the_413_from_the_layer() -> None:
    seen = 0

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal seen
        more = True
        while more:
            message = await receive()
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async with client_for(around(reader)) as client:
        resp = await client.post("/upload", content=chunks(3 * LIMIT))

    assert resp.status_code == 413
    assert resp.json()["code"] == 413
    assert seen <= LIMIT


class Article(BaseModel):
    title: str
    content: str


async def test_the_gateway_error_handlers_answer_413_not_bad_input() -> None:
    app = FastAPI(middleware=[Middleware(GatewayLayer, **layer_options())])
    install_error_handlers(app)

    @app.post("/articles/edit")
    async def edit(article: Article) -> dict[str, int]:
        return {"length": len(article.content)}

    payload = b'{"title": "t", "content": "' + b"x" * (2 * LIMIT) + b'"}'

    async def json_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    async with client_for(app) as client:
        resp = await client.post(
            "/articles/edit", content=json_chunks(), headers={"Content-Type": "application/json"}
        )

    assert resp.status_code == 413


async def test_a_real_server_answers_413_to_a_chunked_upload() -> None:
    port = free_port()
    app = layered_app(body_limit=BodyLimit(LIMIT))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())

    try:
        async with asyncio.timeout(30):  # generous: a loaded machine may start slowly
            while not server.started:
                assert not serving.done(), "the server stopped before it started"
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            big = await client.post("/upload", content=chunks(8 * LIMIT))
            small = await client.post("/upload", content=chunks(1000))
    finally:
        server.should_exit = True
        await serving

    assert big.status_code == 413
    assert small.json() == {"length": 1000}
