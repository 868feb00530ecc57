"""``/articles`` routes against fake article and interactive services on real gRPC ports."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.wechat_emulator import WechatEmulator
from gateway.app import create_app
from gateway.tests.conftest import (
    RunningCodeService,
    RunningUserService,
    bearer,
    client_for,
    login,
    make_settings,
    signup,
    wechat_transport,
)
from kit.errors import AppError, NotFound, PermissionDenied
from kit.grpcx.errors import abort_with
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc

TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


async def _fail(context: Any, error: AppError) -> NoReturn:
    await abort_with(context, error)
    raise AssertionError("abort_with returned")


class FakeArticles(article_pb2_grpc.ArticleServiceServicer):
    """Articles in a dict; enforces authorship like the real service."""

    def __init__(self) -> None:
        self.articles: dict[int, article_pb2.Article] = {}
        self.reads: list[tuple[int, int]] = []

    def _store(self, request: Any, status: int) -> int:
        aid = request.id or len(self.articles) + 1
        self.articles[aid] = article_pb2.Article(
            id=aid,
            title=request.title,
            content=request.content,
            abstract=request.content[:10],
            author=article_pb2.Author(id=request.author_id, name=f"author{request.author_id}"),
            status=status,  # type: ignore[arg-type]
            ctime_ms=1_700_000_000_000,
            utime_ms=1_700_000_060_000,
        )
        return aid

    async def _own(self, aid: int, uid: int, context: Any) -> article_pb2.Article:
        article = self.articles.get(aid)
        if article is None:
            return await _fail(context, NotFound("ARTICLE_NOT_FOUND", "article not found"))
        if article.author.id != uid:
            return await _fail(context, PermissionDenied("ARTICLE_NOT_AUTHOR", "not your article"))
        return article

    async def Save(self, request: Any, context: Any) -> Any:
        if request.id:
            await self._own(request.id, request.author_id, context)
        return article_pb2.SaveResponse(id=self._store(request, 1))

    async def Publish(self, request: Any, context: Any) -> Any:
        if request.id:
            await self._own(request.id, request.author_id, context)
        return article_pb2.PublishResponse(id=self._store(request, 2))

    async def Withdraw(self, request: Any, context: Any) -> Any:
        article = await self._own(request.id, request.author_id, context)
        article.status = 3  # type: ignore[assignment]
        return article_pb2.WithdrawResponse()

    async def List(self, request: Any, context: Any) -> Any:
        own = [a for a in self.articles.values() if a.author.id == request.author_id]
        own.sort(key=lambda a: -a.id)
        return article_pb2.ListResponse(
            articles=own[request.offset : request.offset + request.limit]
        )

    async def GetById(self, request: Any, context: Any) -> Any:
        return article_pb2.GetByIdResponse(
            article=await self._own(request.id, request.author_id, context)
        )

    async def GetPublishedById(self, request: Any, context: Any) -> Any:
        article = self.articles.get(request.id)
        if article is None or article.status != 2:
            await _fail(context, NotFound("ARTICLE_NOT_FOUND", "article not found"))
        self.reads.append((request.id, request.uid))
        return article_pb2.GetPublishedByIdResponse(article=article)


class FakeInteractive(interactive_pb2_grpc.InteractiveServiceServicer):
    """Likes and collects in sets."""

    def __init__(self) -> None:
        self.likes: set[tuple[int, int]] = set()
        self.collects: set[tuple[int, int, int]] = set()

    async def Like(self, request: Any, context: Any) -> Any:
        self.likes.add((request.biz_id, request.uid))
        return interactive_pb2.LikeResponse()

    async def CancelLike(self, request: Any, context: Any) -> Any:
        self.likes.discard((request.biz_id, request.uid))
        return interactive_pb2.CancelLikeResponse()

    async def Collect(self, request: Any, context: Any) -> Any:
        self.collects.add((request.biz_id, request.uid, request.cid))
        return interactive_pb2.CollectResponse()

    async def Get(self, request: Any, context: Any) -> Any:
        return interactive_pb2.GetResponse(
            intr=interactive_pb2.Interactive(
                biz=request.biz,
                biz_id=request.biz_id,
                read_cnt=7,
                like_cnt=sum(1 for a, _ in self.likes if a == request.biz_id),
                collect_cnt=sum(1 for a, _, _ in self.collects if a == request.biz_id),
                liked=(request.biz_id, request.uid) in self.likes,
                collected=any(
                    a == request.biz_id and u == request.uid for a, u, _ in self.collects
                ),
            )
        )


async def _serve(register: Any, servicer: Any) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    register(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeArticles, FakeInteractive, dict[str, Any]]]:
    # Only the RPCs the gateway calls are implemented (mypy-protobuf marks the rest abstract).
    articles = FakeArticles()  # type: ignore[abstract]
    interactive = FakeInteractive()  # type: ignore[abstract]
    a_server, a_port = await _serve(article_pb2_grpc.add_ArticleServiceServicer_to_server, articles)
    i_server, i_port = await _serve(
        interactive_pb2_grpc.add_InteractiveServiceServicer_to_server, interactive
    )
    yield articles, interactive, {"article": (a_server, a_port), "interactive": (i_server, i_port)}
    await a_server.stop(None)
    await i_server.stop(None)


@pytest.fixture
async def article_app(
    redis_url: str,
    redis_client: aioredis.Redis,
    user_service: RunningUserService,
    code_service: RunningCodeService,
    fakes: tuple[FakeArticles, FakeInteractive, dict[str, Any]],
) -> AsyncIterator[FastAPI]:
    servers = fakes[2]
    settings = make_settings(redis_url, user_service.port, sms_port=code_service.port)
    peers = {
        **settings.peers,
        "article": f"127.0.0.1:{servers['article'][1]}",
        "interactive": f"127.0.0.1:{servers['interactive'][1]}",
    }
    application = create_app(
        settings.model_copy(update={"peers": peers}),
        wechat_transport=wechat_transport(WechatEmulator()),
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(article_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(article_app) as client:
        yield client


async def _user(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    await signup(http, f"{name}@example.com")
    return bearer((await login(http, f"{name}@example.com")).access)


async def test_write_publish_list_detail_read_like_collect_withdraw(
    http: httpx.AsyncClient, fakes: tuple[FakeArticles, FakeInteractive, dict[str, Any]]
) -> None:
    author, reader = await _user(http, "author"), await _user(http, "reader")
    draft = {"title": "限流算法", "content": "<p>token bucket</p>"}
    saved = (await http.post("/articles/edit", json=draft, headers=author)).json()
    assert saved["code"] == 0
    assert isinstance(saved["data"], int)
    published = await http.post(
        "/articles/publish", json={**draft, "id": saved["data"]}, headers=author
    )
    aid = published.json()["data"]
    assert aid == saved["data"]

    listed = await http.post("/articles/list", json={"offset": 0, "limit": 10}, headers=author)
    item = listed.json()["data"][0]
    assert set(item) == {"id", "title", "abstract", "status", "ctime", "utime"}
    assert item["status"] == 2
    assert TIME.match(item["ctime"])
    detail = (await http.get(f"/articles/detail/{aid}", headers=author)).json()["data"]
    assert set(detail) == {"id", "title", "content", "status", "ctime", "utime"}

    like = await http.post("/articles/pub/like", json={"id": aid, "like": True}, headers=reader)
    assert like.json()["code"] == 0
    await http.post("/articles/pub/collect", json={"id": aid, "cid": 0}, headers=reader)
    read = (await http.get(f"/articles/pub/{aid}", headers=reader)).json()["data"]
    assert set(read) == {
        "id", "title", "content", "author", "ctime", "utime",
        "readCnt", "likeCnt", "collectCnt", "liked", "collected",
    }  # fmt: skip
    assert (read["likeCnt"], read["liked"], read["collected"], read["readCnt"]) == (
        1,
        True,
        True,
        7,
    )
    assert read["author"] == f"author{fakes[0].articles[aid].author.id}"
    await http.post("/articles/pub/like", json={"id": aid, "like": False}, headers=reader)
    read = (await http.get(f"/articles/pub/{aid}", headers=reader)).json()["data"]
    assert (read["likeCnt"], read["liked"]) == (0, False)

    assert (await http.post("/articles/withdraw", json={"id": aid}, headers=author)).json()[
        "code"
    ] == 0
    gone = (await http.get(f"/articles/pub/{aid}", headers=reader)).json()
    assert gone == {"code": 4, "msg": "article not found", "data": None}


async def test_another_users_article_is_refused(http: httpx.AsyncClient) -> None:
    author, other = await _user(http, "owner"), await _user(http, "intruder")
    aid = (
        await http.post("/articles/edit", json={"title": "t", "content": "c"}, headers=author)
    ).json()["data"]
    for answer in (
        await http.get(f"/articles/detail/{aid}", headers=other),
        await http.post(
            "/articles/edit", json={"id": aid, "title": "x", "content": "y"}, headers=other
        ),
        await http.post("/articles/withdraw", json={"id": aid}, headers=other),
    ):
        assert answer.status_code == 200
        assert answer.json()["code"] == 4
        assert answer.json()["msg"] == "not your article"


async def test_counts_unavailable_still_serves_the_article(
    http: httpx.AsyncClient, fakes: tuple[FakeArticles, FakeInteractive, dict[str, Any]]
) -> None:
    author = await _user(http, "writer")
    aid = (
        await http.post("/articles/publish", json={"title": "t", "content": "c"}, headers=author)
    ).json()["data"]
    labels = {"route": "/articles/pub/{id}", "part": "interactive"}
    before = REGISTRY.get_sample_value("webook_gateway_degraded_total", labels) or 0.0
    await fakes[2]["interactive"][0].stop(None)
    read = (await http.get(f"/articles/pub/{aid}", headers=author)).json()
    assert read["code"] == 0
    assert (read["data"]["title"], read["data"]["likeCnt"], read["data"]["liked"]) == (
        "t",
        0,
        False,
    )
    assert REGISTRY.get_sample_value("webook_gateway_degraded_total", labels) == before + 1
    like = await http.post("/articles/pub/like", json={"id": aid, "like": True}, headers=author)
    assert like.json() == {"code": 5, "msg": "system error", "data": None}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/articles/list", {"offset": 0, "limit": 101}),
        ("post", "/articles/list", {"offset": -1, "limit": 10}),
        ("post", "/articles/edit", {"content": "no title"}),
        ("post", "/articles/edit", {"title": "x" * 257, "content": ""}),
        ("post", "/articles/pub/like", {"id": 1, "like": "maybe"}),
        ("post", "/articles/withdraw", {"id": 0}),
        ("get", "/articles/detail/abc", None),
        ("get", "/articles/pub/-5", None),
    ],
)
async def test_bad_input_is_code_4(
    http: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    headers = await _user(http, "validator")
    answer = await http.request(method, path, json=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["code"] == 4


async def test_articles_need_login(http: httpx.AsyncClient) -> None:
    answer = await http.get("/articles/pub/1", headers={"Authorization": "Bearer null"})
    assert answer.status_code == 401
    assert answer.content == b""
