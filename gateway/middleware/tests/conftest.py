"""Helpers for the middleware tests: small Starlette apps behind the gateway's one layer,
clients, metric readings, a stand-in login check."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Scope

from gateway.auth.principal import Principal
from gateway.deps import Runtime
from gateway.middleware.gateway_layer import GatewayLayer
from gateway.middleware.login import LoginCheck
from gateway.middleware.request_id import RequestIds
from gateway.middleware.route_template import RouteTemplates


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


def layered_app(routes: Sequence[BaseRoute] = (), **concerns: Any) -> Starlette:
    """:func:`make_app`'s app behind :class:`GatewayLayer` with ``concerns`` (a default
    request-id concern unless one is given), its route templates indexed."""
    templates = RouteTemplates()
    concerns.setdefault("request_ids", RequestIds())
    app = make_app([Middleware(GatewayLayer, routes=templates, **concerns)], routes)
    templates.index(app.routes)
    return app


def client_for(app: ASGIApp, *, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    """An in-process client whose requests come from ``ip``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://edge.test"
    )


def sample(name: str, **labels: str) -> float:
    """A metric's current value (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeLogin(LoginCheck):
    """The login check with ``X-Test-User: <uid>`` for a token (no token service, no Redis).

    Paths outside ``public_paths`` without the header answer 401, as with the real check.
    """

    def __init__(self, public_paths: Collection[str] = ()) -> None:
        # The runtime (tokens, sessions) is what authenticate() below replaces.
        super().__init__(cast(Runtime, None), public_paths)

    async def authenticate(self, scope: Scope) -> Principal | None:
        """The user the header names, if any."""
        for name, value in scope["headers"]:
            if name == b"x-test-user":
                return Principal(uid=int(value), ssid="test")
        return None
