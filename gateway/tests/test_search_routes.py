"""``GET /search/query`` of the whole gateway over a fake of the search service's stub.

The fake answers like the real service (its refusals reach the gateway as the gRPC errors a
stub raises: INVALID_ARGUMENT/UNAVAILABLE with an ``ErrorInfo`` reason) and records what
the gateway asked. The real service behind the real gateway is covered by
``tests/e2e/test_search.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from gateway.app import create_app
from gateway.middleware.edge_settings import DEFAULT_RATE_LIMITS
from gateway.routes.search import ReaderAffinity
from gateway.tests.conftest import USER_AGENT, client_for, fake_stubs, make_settings, rpc_error
from kit.errors import InvalidArgument, Unavailable
from webook.search.v1 import search_pb2

# 2026-01-02 03:04:05 UTC, shown in the default zone (Asia/Shanghai, UTC+8).
UTIME_MS = 1_767_323_045_000
TOO_MANY_TERMS = "a " * 65


@dataclass
class FakeSearch:
    """The search service's stub: one article and one user for every query; special
    queries fail."""

    requests: list[search_pb2.SearchRequest] = field(default_factory=list)

    async def Search(
        self, request: search_pb2.SearchRequest, **_: Any
    ) -> search_pb2.SearchResponse:
        """Canned hits, or the refusal the real service gives."""
        self.requests.append(request)
        if request.query == TOO_MANY_TERMS:
            raise rpc_error(
                InvalidArgument(
                    "SEARCH_INVALID_QUERY",
                    "the search query has too many terms (65, at most 64); use fewer words "
                    "or a shorter Chinese phrase",
                    domain="search.webook",
                )
            )
        if request.query == "down":
            raise rpc_error(
                Unavailable("SEARCH_INDEX_UNAVAILABLE", "the search index cannot be read now")
            )
        return search_pb2.SearchResponse(
            hits=[
                search_pb2.Hit(
                    type=search_pb2.DOC_TYPE_ARTICLE,
                    id=11,
                    title="微服务架构",
                    title_highlight="<em>微服务</em>架构",
                    snippet="关于<em>微服务</em>的&lt;笔记&gt;",
                    score=3.14159,
                    author_id=7,
                    author_name="Ada",
                    utime_ms=UTIME_MS,
                ),
                search_pb2.Hit(
                    type=search_pb2.DOC_TYPE_USER,
                    id=7,
                    title="Ada",
                    title_highlight="Ada",
                    snippet="I write about <em>微服务</em>",
                    score=1.5,
                    utime_ms=UTIME_MS,
                ),
            ],
            total=42,
        )


@pytest.fixture
def fake_search() -> FakeSearch:
    """The fake, recording the requests."""
    return FakeSearch()


@pytest.fixture
async def search_app(
    redis_url: str, redis_client: aioredis.Redis, fake_search: FakeSearch
) -> AsyncIterator[FastAPI]:
    """The whole gateway (middleware, login check, error handlers) with the fake search."""
    settings = make_settings(redis_url, free_port())
    application = create_app(settings, stubs=fake_stubs(search=fake_search))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(search_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway."""
    async with client_for(search_app) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer null", "Bearer not-a-token"])
async def test_search_is_public_and_maps_hits(
    http: httpx.AsyncClient,
    fake_search: FakeSearch,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get(
        "/search/query",
        params={"q": "微服务", "type": "article", "offset": 10, "limit": 5},
        headers=headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["msg"]) == (0, "OK")
    assert body["data"] == {
        "total": 42,
        "hits": [
            {
                "type": "article",
                "id": 11,
                "title": "微服务架构",
                "titleHighlight": "<em>微服务</em>架构",
                "snippet": "关于<em>微服务</em>的&lt;笔记&gt;",
                "score": 3.1416,
                "authorId": 7,
                "authorName": "Ada",
                "utime": "2026-01-02 11:04:05",
            },
            {
                "type": "user",
                "id": 7,
                "title": "Ada",
                "titleHighlight": "Ada",
                "snippet": "I write about <em>微服务</em>",
                "score": 1.5,
                "authorId": 0,
                "authorName": "",
                "utime": "2026-01-02 11:04:05",
            },
        ],
    }
    (sent,) = fake_search.requests
    assert (sent.query, sent.type, sent.offset, sent.limit) == (
        "微服务",
        search_pb2.DOC_TYPE_ARTICLE,
        10,
        5,
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("all", search_pb2.DOC_TYPE_UNSPECIFIED),
        ("article", search_pb2.DOC_TYPE_ARTICLE),
        ("user", search_pb2.DOC_TYPE_USER),
    ],
)
async def test_the_type_filter_reaches_the_service(
    http: httpx.AsyncClient,
    fake_search: FakeSearch,
    kind: str,
    expected: int,
) -> None:
    response = await http.get("/search/query", params={"q": "限流算法", "type": kind})
    assert response.json()["code"] == 0
    (sent,) = fake_search.requests
    assert (sent.type, sent.offset, sent.limit) == (expected, 0, 10)


async def test_a_refused_query_answers_code_4_with_the_reason(http: httpx.AsyncClient) -> None:
    response = await http.get("/search/query", params={"q": TOO_MANY_TERMS})
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 4
    assert body["msg"].startswith("the search query has too many terms")
    assert body["data"] is None


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("nul\x00", "q contains a control character (U+0000 at position 3); remove it"),
        ("\x1b[31mred", "q contains a control character (U+001B at position 0); remove it"),
        ("del\x7f", "q contains a control character (U+007F at position 3); remove it"),
        ("c1\x85", "q contains a control character (U+0085 at position 2); remove it"),
    ],
)
async def test_control_characters_are_refused_at_the_edge(
    http: httpx.AsyncClient, fake_search: FakeSearch, q: str, message: str
) -> None:
    response = await http.get("/search/query", params={"q": q})
    assert response.status_code == 200
    assert response.json() == {"code": 4, "msg": message, "data": None}
    assert fake_search.requests == []


async def test_query_syntax_and_whitespace_pass_through_as_text(
    http: httpx.AsyncClient, fake_search: FakeSearch
) -> None:
    texts = ["title:*", 'live:false OR key:"a:1"', "don't", "tab\tand\nnewline", "微服务 -限流"]
    for q in texts:
        assert (await http.get("/search/query", params={"q": q})).json()["code"] == 0
    assert [sent.query for sent in fake_search.requests] == texts


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing field: q"),
        ({"q": "x", "type": "video"}, "invalid type"),
        ({"q": "x", "limit": "51"}, "invalid limit"),
        ({"q": "x", "offset": "-1"}, "invalid offset"),
        ({"q": "x", "limit": "ten"}, "limit must be an integer"),
        ({"q": "x" * 401}, "q is too long (at most 400 characters)"),
    ],
)
async def test_bad_parameters_answer_code_4(
    http: httpx.AsyncClient,
    fake_search: FakeSearch,
    params: dict[str, str],
    message: str,
) -> None:
    response = await http.get("/search/query", params=params)
    assert response.status_code == 200
    assert response.json() == {"code": 4, "msg": message, "data": None}
    assert fake_search.requests == []


def _client_at(application: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@pytest.mark.integration
async def test_search_has_its_own_per_ip_limit(
    search_app: FastAPI, fake_search: FakeSearch
) -> None:
    """The default ``search_ip`` rule (burst 30, then 2/s) on the session's Redis: one
    address is refused with 429 past its burst, another is not, other routes are not."""
    (rule,) = [r for r in DEFAULT_RATE_LIMITS if r.name == "search_ip"]
    assert (rule.paths, rule.key, rule.limit, rule.period, rule.burst) == (
        ("/search/query",),
        "ip",
        120,
        60,
        30,
    )
    async with _client_at(search_app, "198.51.100.40") as greedy:
        answers = []
        # The bucket refills at 2/s: a refusal comes soon after the burst, however slow
        # the machine (200 requests in under ~85 s).
        for i in range(200):
            answers.append(await greedy.get("/search/query", params={"q": f"w{i}"}))
            if answers[-1].status_code == 429:
                break
        other_route = await greedy.get("/healthz")
    async with _client_at(search_app, "198.51.100.41") as neighbour:
        other_ip = await neighbour.get("/search/query", params={"q": "x"})

    assert [a.status_code for a in answers[:30]] == [200] * 30
    refused = answers[-1]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert other_route.status_code == 200
    assert (other_ip.status_code, other_ip.json()["code"]) == (200, 0)
    # The refused request never reached the service; the neighbour's did.
    greedy_passed = len(answers) - 1
    assert len(fake_search.requests) == greedy_passed + 1


async def test_an_unavailable_index_is_a_system_error(http: httpx.AsyncClient) -> None:
    response = await http.get("/search/query", params={"q": "down"})
    assert response.status_code == 200
    assert response.json() == {"code": 5, "msg": "system error", "data": None}


async def test_the_route_is_documented_in_openapi(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/search/query"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"q", "type", "offset", "limit"}
    assert "422" not in operation["responses"]
    assert "security" not in operation
    assert operation["tags"] == ["search"]
    components = schema["components"]["schemas"]
    hit = components["SearchHitView"]["properties"]
    assert {"type", "id", "title", "titleHighlight", "snippet", "score", "utime"} <= set(hit)
    assert set(components["SearchPageView"]["properties"]) == {"hits", "total"}


def _reader_at(application: FastAPI, ip: str, token: str | None = None) -> httpx.AsyncClient:
    """A client from ``ip`` with the tests' User-Agent, signed in when ``token`` is given."""
    headers = {"User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=application, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test", headers=headers)


async def _affinity(
    application: FastAPI, fake: FakeSearch, ip: str, token: str | None = None
) -> str:
    """The affinity key the gateway sent for one search from ``ip`` (and ``token``)."""
    async with _reader_at(application, ip, token) as reader:
        assert (await reader.get("/search/query", params={"q": "微服务"})).json()["code"] == 0
    return fake.requests[-1].affinity_key


async def test_each_reader_gets_a_stable_opaque_affinity_key(
    search_app: FastAPI, fake_search: FakeSearch
) -> None:
    first = await _affinity(search_app, fake_search, "198.51.100.7")
    assert re.fullmatch("[0-9a-f]{32}", first)
    assert "198.51.100.7" not in first
    assert await _affinity(search_app, fake_search, "198.51.100.7") == first
    assert await _affinity(search_app, fake_search, "198.51.100.8") != first
    # One IPv6 subscriber holds a /64: one reader.
    v6 = await _affinity(search_app, fake_search, "2001:db8:1:2::10")
    assert await _affinity(search_app, fake_search, "2001:db8:1:2:ffff::1") == v6
    assert await _affinity(search_app, fake_search, "2001:db8:1:3::10") != v6


async def test_a_signed_in_reader_is_keyed_by_user_wherever_they_connect_from(
    search_app: FastAPI, fake_search: FakeSearch
) -> None:
    tokens = search_app.state.runtime.tokens
    ada = tokens.issue(5, USER_AGENT).access
    bob = tokens.issue(6, USER_AGENT).access
    at_home = await _affinity(search_app, fake_search, "198.51.100.7", ada)
    assert await _affinity(search_app, fake_search, "203.0.113.9", ada) == at_home
    assert await _affinity(search_app, fake_search, "198.51.100.7", bob) != at_home
    anonymous = await _affinity(search_app, fake_search, "198.51.100.7")
    assert anonymous != at_home
    # A token that does not verify is no token: the reader is keyed by address.
    for bad in ("null", ada[:-2] + "xx", tokens.issue(5, "another browser").access):
        assert await _affinity(search_app, fake_search, "198.51.100.7", bad) == anonymous


def test_readers_keys_are_the_same_in_every_gateway_process(redis_url: str) -> None:
    settings = make_settings(redis_url, free_port())
    tokens = create_app(settings).state.runtime.tokens
    one = ReaderAffinity.from_settings(settings, tokens)
    other = ReaderAffinity.from_settings(settings, tokens)
    scope = {"type": "http", "client": ("198.51.100.7", 1234), "headers": []}
    assert one.key(scope, None, "") == other.key(dict(scope), None, "")
    assert one.key({"type": "http", "client": None, "headers": []}, None, "") == ""
