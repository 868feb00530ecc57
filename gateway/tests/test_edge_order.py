"""The gateway's one layer keeps the order of the separate layers it replaced: refusals carry
the request id and CORS headers and are logged; preflights come before the login check; a
bug in a route is a logged 500 envelope with the request id."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from devstack.infra import free_port
from gateway.app import create_app
from gateway.middleware.edge_settings import EdgeSettings
from gateway.tests.conftest import USER_AGENT, bearer, client_for, fake_stubs, make_settings
from kit.logging import log_context

ORIGIN = "http://localhost:3000"


class _BrokenArticleStub:
    """An article stub whose calls hit a bug (not a gRPC failure)."""

    async def GetPublishedById(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")


class _InteractiveStub:
    async def Get(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not reached in these tests")


class _ErrorsWithTheirRequestId(logging.Handler):
    """Keeps each record's message and the request id of its log context."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), (log_context.get() or {}).get("request_id")))


def _access(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.name == "gateway.access"]


async def test_order_of_the_edge_concerns(
    redis_url: str, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        redis_url, free_port(), edge=EdgeSettings(max_body_bytes=64, rate_limits=())
    )
    app = create_app(
        settings, stubs=fake_stubs(article=_BrokenArticleStub(), interactive=_InteractiveStub())
    )
    token = app.state.runtime.tokens.issue(1, USER_AGENT).access
    caplog.set_level(logging.INFO)
    errors = _ErrorsWithTheirRequestId()
    errors_logger = logging.getLogger("gateway.middleware.errors")
    errors_logger.addHandler(errors)
    try:
        async with app.router.lifespan_context(app), client_for(app) as client:
            # 413 before the login check (no token), with its id, CORS and an access log line.
            too_large = await client.post(
                "/articles/edit", content=b"x" * 65, headers={"Origin": ORIGIN}
            )
            # A preflight on a logged-in route: answered before the guards and the login
            # check, not logged or counted.
            preflight = await client.options(
                "/articles/pub/7",
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
            )
            unauthorized = await client.get("/articles/pub/7", headers={"Origin": ORIGIN})
            broken = await client.get(
                "/articles/pub/7", headers={"Origin": ORIGIN, **bearer(token)}
            )
    finally:
        errors_logger.removeHandler(errors)

    assert too_large.status_code == 413
    assert too_large.json() == {"code": 413, "msg": "request body too large", "data": None}
    assert preflight.status_code == 204
    assert "x-request-id" not in preflight.headers
    assert unauthorized.status_code == 401
    assert broken.status_code == 500
    assert broken.json() == {"code": 5, "msg": "system error", "data": None}
    assert "secret" not in broken.text
    for resp in (too_large, unauthorized, broken):
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        assert len(resp.headers["x-request-id"]) == 32
    logged = [(r.status, r.request_id) for r in _access(caplog)]
    assert logged == [
        (resp.status_code, resp.headers["x-request-id"])
        for resp in (too_large, unauthorized, broken)
    ]
    assert errors.seen == [("unhandled error", broken.headers["x-request-id"])]
