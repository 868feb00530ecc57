"""Hostile search queries end to end: the real gateway and search service under a burst of
query-syntax attacks, with ordinary searches interleaved.

The session's stack (``conftest.py``) runs every other service with the edge's rate limits
off (``WEBOOK_GATEWAY_EDGE`` ``rate_limits: []``: every request comes from 127.0.0.1); this
module adds its own search process, publishes one article and withdraws another, then 20
concurrent clients send 1,000 generated hostile queries (field names, wildcards, ranges,
boosts, unbalanced quotes, control characters, oversized text) through
``GET /search/query``. Each must answer HTTP 200 with code 0 or 4, never a withdrawn
article; the ordinary searches interleaved with them must all find the live article, so a
hostile query can neither fail the engine nor trip the gateway's circuit breaker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from devstack.infra import ManagedProcess
from services.search.tests.hostile import hostile_queries
from tests.e2e.conftest import USER_AGENT, RunningStack, signed_up

pytestmark = pytest.mark.e2e

PASSWORD = "hello#world123"
CLIENTS = 20
HOSTILE = 1000
# An ordinary search after every this many hostile ones, per client.
ORDINARY_EVERY = 5
# How long publishing or withdrawing may take to show in results (generous: a loaded
# 2-core machine runs the whole stack).
SYNC_DEADLINE_S = 30.0


async def _login(client: httpx.AsyncClient) -> dict[str, str]:
    return await signed_up(client, "hostile")


async def _search(client: httpx.AsyncClient, q: str) -> tuple[int, dict[str, Any]]:
    response = await client.get("/search/query", params={"q": q})
    assert response.status_code == 200, (q, response.status_code, response.text[:200])
    answer: dict[str, Any] = response.json()
    return int(answer["code"]), answer


def _ids(answer: dict[str, Any]) -> set[tuple[str, int]]:
    return {(hit["type"], hit["id"]) for hit in (answer.get("data") or {}).get("hits", [])}


async def _until(client: httpx.AsyncClient, q: str, expected: set[tuple[str, int]]) -> None:
    """Wait until ``q`` answers exactly ``expected``; fails after :data:`SYNC_DEADLINE_S`."""
    deadline = time.monotonic() + SYNC_DEADLINE_S
    while True:
        code, answer = await _search(client, q)
        if code == 0 and _ids(answer) == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{q!r} answered {answer}, not {expected}, after {SYNC_DEADLINE_S} s")
        await asyncio.sleep(0.2)


async def test_hostile_queries_are_client_errors_and_ordinary_searches_keep_working(
    client: httpx.AsyncClient, search_process: ManagedProcess, stack: RunningStack
) -> None:
    tag, gone = "zq" + uuid.uuid4().hex[:10], "zq" + uuid.uuid4().hex[:10]
    author = await _login(client)
    live_body = {"title": f"token bucket {tag}", "content": "<p>微服务的限流算法</p>"}
    # The withdrawn article's text holds the words hostile queries aim at.
    gone_body = {"title": f"live false status 3 key {gone}", "content": "<p>title secret</p>"}
    live_id = (await client.post("/articles/publish", json=live_body, headers=author)).json()[
        "data"
    ]
    gone_id = (await client.post("/articles/publish", json=gone_body, headers=author)).json()[
        "data"
    ]
    live, withdrawn = ("article", live_id), ("article", gone_id)
    await _until(client, tag, {live})
    await _until(client, gone, {withdrawn})
    withdraw = await client.post("/articles/withdraw", json={"id": gone_id}, headers=author)
    assert withdraw.json()["code"] == 0
    await _until(client, gone, set())

    targeted = [
        "live:false",
        f"live:false {gone}",
        "status:3",
        f'key:"a:{gone_id}"',
        f"doc_id:{gone_id}",
        f"kind:1 {gone}",
        f"title:* {gone}",
        f"{gone} OR live:false",
    ]
    queries = targeted + hostile_queries(HOSTILE - len(targeted), surrogates=False)
    outcomes: dict[int, int] = {}
    failures: list[str] = []
    ordinary = 0

    async def one_client(share: list[str]) -> None:
        nonlocal ordinary
        async with httpx.AsyncClient(
            base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=60
        ) as http:
            for n, q in enumerate(share, 1):
                code, answer = await _search(http, q)
                outcomes[code] = outcomes.get(code, 0) + 1
                if code not in (0, 4):
                    failures.append(f"{q!r} answered {answer}")
                if withdrawn in _ids(answer):
                    failures.append(f"{q!r} returned the withdrawn article")
                if n % ORDINARY_EVERY == 0:
                    ordinary += 1
                    code, answer = await _search(http, f"bucket {tag}")
                    if code != 0 or _ids(answer) != {live}:
                        failures.append(f"an ordinary search after {q!r} answered {answer}")

    await asyncio.gather(*(one_client(queries[i::CLIENTS]) for i in range(CLIENTS)))

    assert failures == []
    assert sum(outcomes.values()) == HOSTILE
    # Both answers happened: the generated queries reach the limits, and most are just text.
    assert outcomes.get(0, 0) > 0
    assert outcomes.get(4, 0) > 0
    assert ordinary == HOSTILE // ORDINARY_EVERY
    # And afterwards, the live article is found and the withdrawn one is not.
    await _until(client, tag, {live})
    assert withdrawn not in _ids((await _search(client, f"{gone} live false status"))[1])
