"""Helpers for the middleware tests: small Starlette apps, clients, metric readings."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def echo_length(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body)})


def make_app(middleware: Sequence[Middleware], routes: Sequence[BaseRoute] = ()) -> Starlette:
    """A Starlette app with a few routes and the given middleware (outermost first)."""
    return Starlette(
        routes=[
            Route("/healthz", ok),
            Route("/users/login", ok, methods=["GET", "POST"]),
            Route("/users/profile", ok),
            Route("/items/{item_id}", ok),
            Route("/upload", echo_length, methods=["POST"]),
            *routes,
        ],
        middleware=list(middleware),
    )


def client_for(app: ASGIApp, *, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    """An in-process client whose requests come from ``ip``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://edge.test"
    )


def sample(name: str, **labels: str) -> float:
    """A metric's current value (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeLogin:
    """Stands in for the login check: ``X-Test-User: <uid>`` logs a user in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-user":
                    scope.setdefault("state", {})["uid"] = int(value)
        await self.app(scope, receive, send)
