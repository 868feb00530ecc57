"""The active-request limit (run by the gateway's layer): 503 beyond the cap, the gauge,
exempt paths."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.middleware.concurrency import ConcurrencyLimit
from gateway.middleware.tests.conftest import client_for, layered_app, sample


async def test_requests_beyond_the_cap_get_503_until_one_finishes() -> None:
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def slow(request: Request) -> Response:
        entered.release()
        await release.wait()
        return PlainTextResponse("done")

    app = layered_app(
        [Route("/slow", slow)], concurrency=ConcurrencyLimit(2, exempt_paths=["/healthz"])
    )
    rejected_before = sample("webook_http_rejected_total", reason="concurrency")
    active_before = sample("webook_http_active_requests")
    async with client_for(app) as client:
        inside = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        for _ in range(2):
            await entered.acquire()
        assert sample("webook_http_active_requests") == active_before + 2

        refused = await client.get("/slow")
        probe = await client.get("/healthz")
        release.set()
        answered = await asyncio.gather(*inside)
        after = await client.get("/items/1")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {"code": 503, "msg": "server busy, please retry later", "data": None}
    assert probe.status_code == 200
    assert [r.status_code for r in answered] == [200, 200]
    assert after.status_code == 200
    assert sample("webook_http_rejected_total", reason="concurrency") == rejected_before + 1
    assert sample("webook_http_active_requests") == active_before


async def test_a_failing_request_releases_its_slot() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    limit = ConcurrencyLimit(1)
    app = layered_app([Route("/broken", broken)], concurrency=limit)
    async with client_for(app) as client:
        failed = [(await client.get("/broken")).status_code for _ in range(3)]
        assert (await client.get("/items/1")).status_code == 200

    assert failed == [500, 500, 500]  # each answered by the unhandled-error concern
    assert limit.active == 0
