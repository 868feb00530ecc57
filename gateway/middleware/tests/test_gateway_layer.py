"""GatewayLayer: the gateway's per-request concerns in one layer, in the order separate
layers had (the gateway-level checks are in gateway/tests/test_edge_order.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.middleware.body_limit import BodyLimit
from gateway.middleware.concurrency import ConcurrencyLimit
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.request_id import DEFAULT_HEADER, RequestIds, current_request_id
from gateway.middleware.tests.conftest import client_for, layered_app, sample
from kit.logging import log_context

ORIGIN = "http://localhost:3000"


async def where_is_my_id(request: Request) -> Response:
    context = log_context.get() or {}
    assert context.get("request_id") == request.state.request_id == current_request_id.get()
    return PlainTextResponse(request.state.request_id, headers={"X-Request-ID": "app's own"})


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug with a secret inside")


def app_with(
    *, header: str = DEFAULT_HEADER, trust_incoming: bool = True, **concerns: Any
) -> Starlette:
    return layered_app(
        [Route("/where", where_is_my_id), Route("/broken", broken)],
        request_ids=RequestIds(header=header, trust_incoming=trust_incoming),
        **concerns,
    )


class ErrorsWithTheirRequestId(logging.Handler):
    """Keeps each record's message, the request id of its log context and its exception."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        context = log_context.get() or {}
        exc = record.exc_info[1] if record.exc_info else None
        self.seen.append((record.getMessage(), context.get("request_id"), str(exc)))


def access_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.name == "gateway.access"]


async def test_the_id_reaches_state_context_header_and_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with()
    caplog.set_level(logging.INFO, logger="gateway.access")
    before = sample("webook_http_requests_total", route="/where", method="GET", status="200")

    async with client_for(app) as client:
        resp = await client.get("/where", headers={"X-Request-ID": "abc-123"})

    assert resp.text == "abc-123"
    assert resp.headers.get_list("x-request-id") == ["abc-123"]  # the app's own replaced
    (record,) = access_records(caplog)
    assert record.request_id == "abc-123"
    assert record.route == "/where"
    assert record.status == 200
    after = sample("webook_http_requests_total", route="/where", method="GET", status="200")
    assert after == before + 1
    assert current_request_id.get() is None


async def test_malformed_or_untrusted_ids_are_replaced() -> None:
    trusting = app_with()
    renamed = app_with(header="X-Correlation-ID", trust_incoming=False)
    async with client_for(trusting) as client:
        bad = await client.get("/where", headers={"X-Request-ID": "no spaces allowed"})
    async with client_for(renamed) as client:
        ignored = await client.get("/where", headers={"X-Correlation-ID": "mine"})

    assert len(bad.headers["x-request-id"]) == 32
    assert ignored.headers["x-correlation-id"] != "mine"
    assert ignored.text == ignored.headers["x-correlation-id"]


async def test_an_unhandled_error_is_a_logged_500_envelope_with_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with(cors=CorsPolicy(["http://localhost:*"]))
    caplog.set_level(logging.INFO)
    errors = ErrorsWithTheirRequestId()
    logging.getLogger("gateway.middleware.errors").addHandler(errors)
    before = sample("webook_http_requests_total", route="/broken", method="GET", status="500")

    try:
        async with client_for(app) as client:
            resp = await client.get("/broken", headers={"Origin": ORIGIN})
    finally:
        logging.getLogger("gateway.middleware.errors").removeHandler(errors)

    assert resp.status_code == 500
    assert resp.json() == {"code": 5, "msg": "system error", "data": None}
    assert "secret" not in resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    request_id = resp.headers["x-request-id"]
    (access,) = access_records(caplog)
    assert access.status == 500
    assert access.request_id == request_id
    assert errors.seen == [("unhandled error", request_id, "a bug with a secret inside")]
    after = sample("webook_http_requests_total", route="/broken", method="GET", status="500")
    assert after == before + 1


async def test_refusals_carry_the_id_and_cors_and_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    full = ConcurrencyLimit(1)
    assert full.enter()  # someone is inside already
    busy = app_with(cors=CorsPolicy(["http://localhost:*"]), concurrency=full)
    small = app_with(cors=CorsPolicy(["http://localhost:*"]), body_limit=BodyLimit(4))
    caplog.set_level(logging.INFO, logger="gateway.access")

    async with client_for(busy) as client:
        refused = await client.get("/where", headers={"Origin": ORIGIN})
        probe = await client.get("/healthz")  # not exempt here: refused too
    async with client_for(small) as client:
        too_large = await client.post("/upload", content=b"12345", headers={"Origin": ORIGIN})
        fits = await client.post("/upload", content=b"1234")

    assert [refused.status_code, probe.status_code, too_large.status_code] == [503, 503, 413]
    assert fits.json() == {"length": 4}
    assert full.active == 1  # a refused request is never counted in
    for resp in (refused, too_large):
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        assert len(resp.headers["x-request-id"]) == 32
    logged = {(r.status, r.request_id) for r in access_records(caplog)}
    assert (503, refused.headers["x-request-id"]) in logged
    assert (413, too_large.headers["x-request-id"]) in logged


async def test_a_preflight_is_answered_first_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    full = ConcurrencyLimit(1)
    assert full.enter()
    app = app_with(cors=CorsPolicy(["http://localhost:*"]), concurrency=full)
    caplog.set_level(logging.INFO, logger="gateway.access")

    async with client_for(app) as client:
        resp = await client.options("/where", headers={"Origin": ORIGIN})

    assert resp.status_code == 204  # not refused by the (full) concurrency cap
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" not in resp.headers
    assert access_records(caplog) == []


async def test_a_chunked_body_over_the_limit_is_a_413() -> None:
    app = app_with(body_limit=BodyLimit(4))

    async def chunks() -> Any:
        yield b"123"
        yield b"456"

    async with client_for(app) as client:
        resp = await client.post("/upload", content=chunks())

    assert resp.status_code == 413
    assert len(resp.headers["x-request-id"]) == 32
