"""``GET /articles/ranking`` of the whole gateway over a fake of the ranking service's stub.

The fake answers like the real service (a refusal reaches the gateway as the gRPC error a
stub raises) and records what the gateway asked. The real service is covered by
``services/ranking/tests``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from gateway.app import create_app
from gateway.tests.conftest import client_for, fake_stubs, make_settings, rpc_error
from kit.errors import Unavailable
from webook.ranking.v1 import ranking_pb2

# 2026-01-02 03:04:05 UTC, shown in the default zone (Asia/Shanghai, UTC+8).
UTIME_MS = 1_767_323_045_000
COMPUTED_MS = UTIME_MS + 3_600_000


@dataclass
class FakeRanking:
    """The ranking service's stub: two ranked articles; ``down`` makes it fail."""

    requests: list[ranking_pb2.TopArticlesRequest] = field(default_factory=list)
    down: bool = False
    stale: bool = False

    async def TopArticles(
        self, request: ranking_pb2.TopArticlesRequest, **_: Any
    ) -> ranking_pb2.TopArticlesResponse:
        """A canned page, or the service's unavailability."""
        self.requests.append(request)
        if self.down:
            raise rpc_error(Unavailable("RANKING_JOB_FAILED", "down", domain="ranking.webook"))
        return ranking_pb2.TopArticlesResponse(
            articles=[
                ranking_pb2.RankedArticle(
                    id=31,
                    title="微服务",
                    abstract="a",
                    author_id=7,
                    author_name="Ada",
                    like_cnt=12,
                    utime_ms=UTIME_MS,
                    score=1.25,
                ),
                ranking_pb2.RankedArticle(id=30, title="t", utime_ms=UTIME_MS, score=0.5),
            ],
            computed_at_ms=COMPUTED_MS,
            stale=self.stale,
            total=2,
        )


@pytest.fixture
def fake_ranking() -> FakeRanking:
    """The fake, recording the requests."""
    return FakeRanking()


@pytest.fixture
async def http(
    redis_url: str, redis_client: aioredis.Redis, fake_ranking: FakeRanking
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the whole gateway (middleware, login check, errors) over the fake."""
    application: FastAPI = create_app(
        make_settings(redis_url, free_port()), stubs=fake_stubs(ranking=fake_ranking)
    )
    async with application.router.lifespan_context(application), client_for(application) as c:
        yield c


@pytest.mark.parametrize("authorization", [None, "Bearer null"])
async def test_the_ranking_is_public_and_shaped(
    http: httpx.AsyncClient, fake_ranking: FakeRanking, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get(
        "/articles/ranking", params={"offset": 5, "limit": 2}, headers=headers
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["msg"]) == (0, "OK")
    assert body["data"] == {
        "articles": [
            {
                "id": 31,
                "title": "微服务",
                "abstract": "a",
                "authorId": 7,
                "authorName": "Ada",
                "likeCnt": 12,
                "utime": "2026-01-02 11:04:05",
                "score": 1.25,
            },
            {
                "id": 30,
                "title": "t",
                "abstract": "",
                "authorId": 0,
                "authorName": "",
                "likeCnt": 0,
                "utime": "2026-01-02 11:04:05",
                "score": 0.5,
            },
        ],
        "total": 2,
        "computedAt": "2026-01-02 12:04:05",
        "stale": False,
    }
    assert [(r.offset, r.limit) for r in fake_ranking.requests] == [(5, 2)]


async def test_defaults_and_a_stale_ranking(
    http: httpx.AsyncClient, fake_ranking: FakeRanking
) -> None:
    fake_ranking.stale = True
    body = (await http.get("/articles/ranking")).json()
    assert body["data"]["stale"] is True
    assert [(r.offset, r.limit) for r in fake_ranking.requests] == [(0, 20)]


@pytest.mark.parametrize(
    "params",
    [
        {"offset": -1},
        {"offset": 1001},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": "1e3"},
    ],
)
async def test_bad_pages_are_refused_at_the_edge(
    http: httpx.AsyncClient, fake_ranking: FakeRanking, params: dict[str, Any]
) -> None:
    response = await http.get("/articles/ranking", params=params)
    assert response.status_code == 200
    assert response.json()["code"] == 4
    assert fake_ranking.requests == []


async def test_an_unavailable_service_is_a_system_error(
    http: httpx.AsyncClient, fake_ranking: FakeRanking
) -> None:
    fake_ranking.down = True
    response = await http.get("/articles/ranking")
    assert response.json() == {"code": 5, "msg": "system error", "data": None}


async def test_the_route_is_documented_in_openapi(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/articles/ranking"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"offset", "limit"}
    assert "422" not in operation["responses"]
    assert "security" not in operation
    assert operation["tags"] == ["articles"]
    components = schema["components"]["schemas"]
    assert set(components["RankingPageView"]["properties"]) == {
        "articles",
        "total",
        "computedAt",
        "stale",
    }
    assert {"id", "title", "likeCnt", "utime", "score"} <= set(
        components["RankedArticleView"]["properties"]
    )
