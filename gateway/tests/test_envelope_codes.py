"""``webook_http_envelope_codes_total``: every envelope answer counted once by its code.

Answers are HTTP 200 whether they succeed or not, so the SLOs read the envelope's code from
this counter: success ``"0"``, a backend down ``"5"``, bad input ``"4"``, the edge's refusals
by their own code; answers without an envelope (the empty 401, ``/metrics``, the probes) are
not counted at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.infra import free_port
from gateway.app import create_app
from gateway.middleware.edge_settings import EdgeSettings
from gateway.tests.conftest import client_for, fake_stubs, make_settings, rpc_error
from kit.errors import Unavailable
from webook.ranking.v1 import ranking_pb2

pytestmark = pytest.mark.integration

RANKING = "/articles/ranking"


@dataclass
class FakeRanking:
    """The ranking service's stub: an empty page, or unavailable while ``down``."""

    down: bool = False

    async def TopArticles(
        self, request: ranking_pb2.TopArticlesRequest, **_: Any
    ) -> ranking_pb2.TopArticlesResponse:
        """An empty page, or the error a stub raises when the service is down."""
        if self.down:
            raise rpc_error(Unavailable("RANKING_JOB_FAILED", "down", domain="ranking.webook"))
        return ranking_pb2.TopArticlesResponse(total=0)


def counted(route: str, method: str, code: str) -> float:
    """The counter's value for one label set (0 when never counted)."""
    value = REGISTRY.get_sample_value(
        "webook_http_envelope_codes_total", {"route": route, "method": method, "code": code}
    )
    return value or 0.0


def counted_for_route(route: str) -> float:
    """The counter summed over every method and code of ``route``."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "webook_http_envelope_codes":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["route"] == route:
                total += sample.value
    return total


@pytest.fixture
def ranking() -> FakeRanking:
    """The fake ranking stub, up."""
    return FakeRanking()


@pytest.fixture
async def app(
    redis_url: str, redis_client: aioredis.Redis, ranking: FakeRanking
) -> AsyncIterator[FastAPI]:
    """The gateway over the fake ranking stub, with a 64-byte body limit."""
    application = create_app(
        make_settings(redis_url, free_port(), edge=EdgeSettings(max_body_bytes=64, rate_limits=())),
        stubs=fake_stubs(ranking=ranking),
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the started gateway."""
    async with client_for(app) as client:
        yield client


async def test_success_counts_code_0_and_a_backend_down_code_5(
    http: httpx.AsyncClient, ranking: FakeRanking
) -> None:
    ok_before, error_before = counted(RANKING, "GET", "0"), counted(RANKING, "GET", "5")

    answer = await http.get(RANKING)
    assert (answer.status_code, answer.json()["code"]) == (200, 0)
    assert counted(RANKING, "GET", "0") == ok_before + 1
    assert counted(RANKING, "GET", "5") == error_before

    ranking.down = True
    answer = await http.get(RANKING)
    # HTTP 200 all the same: only the envelope's code tells the failure apart.
    assert (answer.status_code, answer.json()["code"]) == (200, 5)
    assert counted(RANKING, "GET", "5") == error_before + 1
    assert counted(RANKING, "GET", "0") == ok_before + 1
    exposed = (await http.get("/metrics")).text
    assert (
        'webook_http_envelope_codes_total{code="5",method="GET",route="/articles/ranking"}'
        in exposed
    )


async def test_bad_input_and_edge_refusals_count_their_own_code(http: httpx.AsyncClient) -> None:
    bad_before = counted(RANKING, "GET", "4")
    answer = await http.get(RANKING, params={"limit": 0})
    assert answer.json()["code"] == 4
    assert counted(RANKING, "GET", "4") == bad_before + 1

    too_large_before = counted("/users/login", "POST", "413")
    answer = await http.post("/users/login", content=b"x" * 1000)
    assert (answer.status_code, answer.json()["code"]) == (413, 413)
    assert counted("/users/login", "POST", "413") == too_large_before + 1


async def test_answers_without_an_envelope_are_not_counted(http: httpx.AsyncClient) -> None:
    routes = ("/users/profile", "/metrics", "/healthz", "/readyz", "unmatched")
    before = {route: counted_for_route(route) for route in routes}

    assert (await http.get("/users/profile")).status_code == 401
    assert (await http.get("/metrics")).status_code == 200
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200
    assert (await http.get("/no/such/route")).status_code == 401

    assert {route: counted_for_route(route) for route in routes} == before
