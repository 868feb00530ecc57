"""ObserveMiddleware: request id, access log and metrics in one layer, as three layers did."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.middleware.errors import UnhandledErrorMiddleware
from gateway.middleware.observe import ObserveMiddleware
from gateway.middleware.request_id import DEFAULT_HEADER, current_request_id
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.tests.conftest import client_for, make_app, sample
from kit.logging import log_context


async def where_is_my_id(request: Request) -> Response:
    context = log_context.get() or {}
    assert context.get("request_id") == request.state.request_id == current_request_id.get()
    return PlainTextResponse(request.state.request_id, headers={"X-Request-ID": "app's own"})


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


def observed_app(
    *inner: Middleware, header: str = DEFAULT_HEADER, trust_incoming: bool = True
) -> Starlette:
    routes = RouteTemplates()
    app = make_app(
        [
            Middleware(
                ObserveMiddleware, routes=routes, header=header, trust_incoming=trust_incoming
            ),
            *inner,
        ],
        [Route("/where", where_is_my_id), Route("/broken", broken)],
    )
    routes.index(app.routes)
    return app


async def test_the_id_reaches_state_context_header_and_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = observed_app()
    caplog.set_level(logging.INFO, logger="gateway.access")
    before = sample("webook_http_requests_total", route="/where", method="GET", status="200")

    async with client_for(app) as client:
        resp = await client.get("/where", headers={"X-Request-ID": "abc-123"})

    assert resp.text == "abc-123"
    assert resp.headers.get_list("x-request-id") == ["abc-123"]  # the app's own replaced
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert record.request_id == "abc-123"  # type: ignore[attr-defined]
    assert record.route == "/where"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    after = sample("webook_http_requests_total", route="/where", method="GET", status="200")
    assert after == before + 1
    assert current_request_id.get() is None


async def test_malformed_or_untrusted_ids_are_replaced() -> None:
    trusting = observed_app()
    renamed = observed_app(header="X-Correlation-ID", trust_incoming=False)
    async with client_for(trusting) as client:
        bad = await client.get("/where", headers={"X-Request-ID": "no spaces allowed"})
    async with client_for(renamed) as client:
        ignored = await client.get("/where", headers={"X-Correlation-ID": "mine"})

    assert len(bad.headers["x-request-id"]) == 32
    assert ignored.headers["x-correlation-id"] != "mine"
    assert ignored.text == ignored.headers["x-correlation-id"]


async def test_an_unhandled_error_is_logged_and_counted_as_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = observed_app(Middleware(UnhandledErrorMiddleware))
    caplog.set_level(logging.INFO, logger="gateway.access")
    before = sample("webook_http_requests_total", route="/broken", method="GET", status="500")

    async with client_for(app) as client:
        resp = await client.get("/broken")

    assert resp.status_code == 500
    assert len(resp.headers["x-request-id"]) == 32
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert record.status == 500  # type: ignore[attr-defined]
    assert record.request_id == resp.headers["x-request-id"]  # type: ignore[attr-defined]
    after = sample("webook_http_requests_total", route="/broken", method="GET", status="500")
    assert after == before + 1
