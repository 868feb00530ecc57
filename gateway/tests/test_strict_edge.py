"""The input rules of the edge, through the whole gateway: strict types, valid text, and no
number a service answers that makes a page fail.

Bad input must answer code 4 with a message naming the field, before any service is called
(the fakes record every call); extreme values in the services' replies (``int64`` bounds,
times near 2**63, a NaN score) must still answer code 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from gateway.app import create_app
from gateway.presenters import EARLIEST_SECOND, LATEST_SECOND
from gateway.schemas import INT64_MAX, INT64_MIN
from gateway.tests.conftest import (
    PASSWORD,
    USER_AGENT,
    RunningUserService,
    bearer,
    client_for,
    fake_stubs,
    make_settings,
)
from webook.article.v1 import article_pb2
from webook.comment.v1 import comment_pb2
from webook.follow.v1 import follow_pb2
from webook.interactive.v1 import interactive_pb2
from webook.search.v1 import search_pb2
from webook.user.v1.user_pb2_grpc import UserServiceStub

LONE_SURROGATE: Final = "\ud800"
# The JSON text of a body holding a lone surrogate: json.dumps escapes it as \ud800 (what
# a hostile client sends); a UTF-8 encoder would refuse to write it at all.
CODEC_WORDS: Final = ("codec", "surrogates not allowed", "utf-8", "position 0:")


class ExtremeServices:
    """Every read the gateway presents, answered with the extreme values of each field;
    every call recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _article(self) -> article_pb2.Article:
        return article_pb2.Article(
            id=INT64_MAX,
            title="t",
            content="c",
            abstract="a",
            author=article_pb2.Author(id=INT64_MAX, name="n"),
            status=article_pb2.ArticleStatus.ValueType(2),
            ctime_ms=INT64_MIN,
            utime_ms=INT64_MAX,
        )

    def _comment(self, depth: int = 0) -> comment_pb2.Comment:
        return comment_pb2.Comment(
            id=INT64_MAX,
            uid=INT64_MAX,
            biz="article",
            biz_id=INT64_MAX,
            content="c",
            root_id=INT64_MAX,
            parent_id=INT64_MAX,
            reply_cnt=INT64_MAX,
            ctime_ms=INT64_MAX if depth else INT64_MIN,
            children=[] if depth else [self._comment(1)],
        )

    def _relations(self) -> list[follow_pb2.FollowRelation]:
        return [
            follow_pb2.FollowRelation(follower=INT64_MAX, followee=INT64_MAX, ctime_ms=ms)
            for ms in (INT64_MAX, INT64_MIN, -1)
        ]

    async def GetPublishedById(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetPublishedById")
        return article_pb2.GetPublishedByIdResponse(article=self._article())

    async def GetById(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetById")
        return article_pb2.GetByIdResponse(article=self._article())

    async def List(self, request: Any, **_: Any) -> Any:
        self.calls.append("List")
        return article_pb2.ListResponse(articles=[self._article()])

    async def Get(self, request: Any, **_: Any) -> Any:
        self.calls.append("Get")
        return interactive_pb2.GetResponse(
            intr=interactive_pb2.Interactive(
                read_cnt=INT64_MAX, like_cnt=INT64_MIN, collect_cnt=INT64_MAX, liked=True
            )
        )

    async def GetCommentList(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetCommentList")
        return comment_pb2.GetCommentListResponse(comments=[self._comment()])

    async def GetMoreReplies(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetMoreReplies")
        return comment_pb2.GetMoreRepliesResponse(replies=[self._comment(1)])

    async def CountComments(self, request: Any, **_: Any) -> Any:
        self.calls.append("CountComments")
        return comment_pb2.CountCommentsResponse(counts={INT64_MAX: INT64_MAX})

    async def GetFollowee(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetFollowee")
        return follow_pb2.GetFolloweeResponse(relations=self._relations(), next_cursor=INT64_MAX)

    async def GetFollower(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetFollower")
        return follow_pb2.GetFollowerResponse(relations=self._relations(), next_cursor=INT64_MAX)

    async def GetFollowStatic(self, request: Any, **_: Any) -> Any:
        self.calls.append("GetFollowStatic")
        return follow_pb2.GetFollowStaticResponse(
            static=follow_pb2.FollowStatic(uid=INT64_MAX, followers=INT64_MAX, followees=0)
        )

    async def Search(self, request: Any, **_: Any) -> Any:
        self.calls.append("Search")
        hits = [
            search_pb2.Hit(
                type=search_pb2.DOC_TYPE_ARTICLE,
                id=INT64_MAX,
                title="t",
                score=score,
                author_id=INT64_MAX,
                utime_ms=utime,
            )
            for score, utime in (
                (math.inf, INT64_MAX),
                (math.nan, INT64_MIN),
                (-math.inf, INT64_MAX - 1),
            )
        ]
        return search_pb2.SearchResponse(hits=hits, total=INT64_MAX)

    def __getattr__(self, method: str) -> Any:
        async def recorded(request: Any, **_: Any) -> Any:
            self.calls.append(method)
            raise AssertionError(f"{method} must not be called by these tests")

        return recorded


@pytest.fixture
def services() -> ExtremeServices:
    """The fake services, recording the calls."""
    return ExtremeServices()


@pytest.fixture
async def edge_app(
    redis_url: str,
    redis_client: aioredis.Redis,
    user_service: RunningUserService,
    services: ExtremeServices,
) -> AsyncIterator[FastAPI]:
    """The whole gateway over the real fake user service and the extreme fakes."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{user_service.port}")
    stubs = fake_stubs(
        user=UserServiceStub(channel),
        article=services,
        interactive=services,
        comment=services,
        follow=services,
        search=services,
    )
    application = create_app(make_settings(redis_url, free_port()), stubs=stubs)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        await channel.close(None)


@pytest.fixture
async def http(edge_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway, logged in as user 1."""
    access = edge_app.state.runtime.tokens.issue(1, USER_AGENT).access
    async with client_for(edge_app, headers=bearer(access)) as client:
        yield client


async def _post(http: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    """POST ``body`` as ASCII JSON (non-ASCII as ``\\u`` escapes, lone surrogates too)."""
    content = json.dumps(body).encode("ascii")
    return await http.post(path, content=content, headers={"Content-Type": "application/json"})


def _refused(response: httpx.Response) -> str:
    """The message of a code-4 answer (asserting it is one)."""
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == 4, answer
    message: str = answer["msg"]
    return message


# Body fields that hold an id, with the rest of a valid body.
ID_FIELDS: Final = [
    ("/articles/withdraw", "id", {}),
    ("/articles/edit", "id", {"title": "t", "content": "c"}),
    ("/articles/pub/like", "id", {"like": True}),
    ("/articles/pub/collect", "id", {}),
    ("/articles/pub/collect", "cid", {"id": 1}),
    ("/comments/create", "bizId", {"content": "a"}),
    ("/comments/create", "parentId", {"bizId": 1, "content": "a"}),
    ("/comments/delete", "id", {}),
    ("/follow/follow", "followee", {}),
    ("/follow/cancel", "followee", {}),
    ("/articles/list", "limit", {}),
    ("/articles/list", "offset", {}),
]


@pytest.mark.parametrize("value", [True, False, "7", " 7 ", "+7", 7.0, 7.5, None, [7], {"v": 7}])
@pytest.mark.parametrize(("path", "field", "rest"), ID_FIELDS)
async def test_body_integers_are_json_integers_only(
    http: httpx.AsyncClient,
    services: ExtremeServices,
    path: str,
    field: str,
    rest: dict[str, Any],
    value: object,
) -> None:
    message = _refused(await _post(http, path, {**rest, field: value}))
    assert message == f"{field} must be an integer"
    assert services.calls == []


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/articles/withdraw", "id", INT64_MAX + 1),
        ("/articles/withdraw", "id", 2**64),
        ("/articles/withdraw", "id", 0),
        ("/follow/follow", "followee", -1),
        ("/comments/create", "bizId", 10**30),
        ("/articles/list", "limit", 101),
    ],
)
async def test_body_integers_are_in_range(
    http: httpx.AsyncClient, services: ExtremeServices, path: str, field: str, value: int
) -> None:
    body = {"content": "a"} if path == "/comments/create" else {}
    assert _refused(await _post(http, path, {**body, field: value})) == f"invalid {field}"
    assert services.calls == []


@pytest.mark.parametrize("value", ["off", "true", "false", 1, 0, None, "1"])
async def test_booleans_are_json_booleans_only(
    http: httpx.AsyncClient, services: ExtremeServices, value: object
) -> None:
    message = _refused(await _post(http, "/articles/pub/like", {"id": 1, "like": value}))
    assert message == "like must be a boolean"
    assert services.calls == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/articles/edit", {"title": "a\ud800", "content": "c"}, "title"),
        ("/articles/publish", {"title": "t", "content": "\udfff"}, "content"),
        ("/comments/create", {"bizId": 1, "content": "hi \ud83d"}, "content"),
        ("/comments/create", {"bizId": 1, "content": "a", "biz": "\ud800"}, "biz"),
        ("/users/edit", {"nickname": "n\ud800", "birthday": "", "aboutMe": ""}, "nickname"),
        ("/users/edit", {"nickname": "n", "birthday": "\ud800", "aboutMe": ""}, "birthday"),
        ("/users/edit", {"nickname": "n", "birthday": "", "aboutMe": "\udc00"}, "aboutMe"),
        ("/users/login_sms/code/send", {"phone": "139\ud800"}, "phone"),
        ("/users/login_sms", {"phone": "13900000003", "code": "\ud800"}, "code"),
    ],
)
async def test_lone_surrogates_are_refused_naming_the_field(
    http: httpx.AsyncClient, services: ExtremeServices, path: str, body: Any, field: str
) -> None:
    message = _refused(await _post(http, path, body))
    assert message.startswith(f"{field} is not valid text: it contains a lone surrogate")
    assert not any(word in message for word in CODEC_WORDS)
    assert services.calls == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/users/signup",
            {"email": "s@example.com", "password": "pass#1\ud800x", "confirmPassword": "x"},
            "password",
        ),
        (
            "/users/signup",
            {"email": "s@example.com", "password": PASSWORD, "confirmPassword": "\ud800"},
            "confirmPassword",
        ),
        ("/users/signup", {"email": "s\ud800@x.com", "password": PASSWORD}, "email"),
        ("/users/login", {"email": "a@example.com", "password": "\ud800"}, "password"),
        ("/users/login", {"email": "\udbff@example.com", "password": PASSWORD}, "email"),
    ],
)
async def test_lone_surrogates_in_credentials_never_show_codec_text(
    client: httpx.AsyncClient, path: str, body: Any, field: str
) -> None:
    message = _refused(await _post(client, path, body))
    assert message.startswith(f"{field} is not valid text: it contains a lone surrogate")
    assert not any(word in message for word in CODEC_WORDS)


async def test_a_valid_surrogate_pair_is_text(
    http: httpx.AsyncClient, services: ExtremeServices
) -> None:
    # "\ud83d\ude00" in JSON is one character (U+1F600), not two lone halves: the body
    # is refused for its id, which shows the text passed the text rule.
    body = b'{"title": "\\ud83d\\ude00", "content": "c", "id": "x"}'
    answer = await http.post(
        "/articles/edit", content=body, headers={"Content-Type": "application/json"}
    )
    assert _refused(answer) == "id must be an integer"


@pytest.mark.parametrize(
    "path",
    ["/articles/edit", "/users/signup", "/users/login", "/comments/create", "/follow/follow"],
)
@pytest.mark.parametrize(
    "content",
    [
        b'{"title": "\xff", "content": "c"}',
        b'{"bizId": 1, "content": "\xc3("}',
        b'{"id": 1, "content": "\x80"}',  # a lone continuation byte
    ],
)
async def test_a_body_that_is_not_utf8_is_bad_input(
    http: httpx.AsyncClient, services: ExtremeServices, path: str, content: bytes
) -> None:
    answer = await http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert _refused(answer) == "malformed request body"
    assert services.calls == []


async def test_an_encoded_surrogate_in_the_body_is_refused_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    # Python's JSON decoder reads surrogate code points encoded as UTF-8 bytes
    # ("surrogatepass"): the text rule of the fields catches what the decoder let through.
    content = b'{"email": "a@example.com", "password": "pass\xed\xa0\x80word1#"}'
    answer = await client.post(
        "/users/login", content=content, headers={"Content-Type": "application/json"}
    )
    message = _refused(answer)
    assert message.startswith("password is not valid text: it contains a lone surrogate")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/articles/pub/%207", "id"),
        ("/articles/pub/7%20", "id"),
        ("/articles/pub/7.0", "id"),
        ("/articles/pub/1_000", "id"),
        ("/articles/pub/true", "id"),
        ("/articles/pub/%D9%A7", "id"),  # ARABIC-INDIC DIGIT SEVEN
        ("/articles/detail/%207", "id"),
        ("/articles/detail/1e3", "id"),
        ("/follow/counts?uid=%207", "uid"),
        ("/follow/counts?uid=7.0", "uid"),
        ("/follow/counts?uid=true", "uid"),
        ("/follow/status?uid=0x7", "uid"),
        ("/follow/followees?limit=1_0", "limit"),
        ("/comments/list?bizId=%2B%207", "bizId"),
        ("/comments/count?bizIds=1&bizIds=7.0", "bizIds.1"),
        ("/search/query?q=go&limit=1e1", "limit"),
        (f"/follow/counts?uid={'0' * 40}1", "uid"),
    ],
)
async def test_url_integers_are_decimal_digits_only(
    http: httpx.AsyncClient, services: ExtremeServices, url: str, field: str
) -> None:
    assert _refused(await http.get(url)) == f"{field} must be an integer"
    assert services.calls == []


@pytest.mark.parametrize("url", ["/articles/pub/007", "/articles/pub/+7", "/follow/counts?uid=07"])
async def test_url_integers_read_as_the_go_backend_read_them(
    http: httpx.AsyncClient, services: ExtremeServices, url: str
) -> None:
    # strconv.ParseInt(s, 10, 64): leading zeros and a sign are decimal integers.
    answer = await http.get(url)
    assert answer.json()["code"] == 0, answer.text
    assert len(services.calls) >= 1


LATEST_SHANGHAI: Final = "9999-12-31 07:59:59"
# Shanghai local mean time (UTC+08:05:43) before 1901.
EARLIEST_SHANGHAI: Final = "0001-01-02 08:05:43"


@pytest.mark.parametrize(
    "url",
    [
        "/articles/pub/1",
        "/articles/detail/1",
        "/comments/list?bizId=1",
        "/comments/replies?rootId=1",
        f"/comments/count?bizIds={INT64_MAX}&bizIds={INT64_MIN}",
        "/follow/followees",
        "/follow/followers?uid=1",
        f"/follow/counts?uid={INT64_MAX}",
        "/search/query?q=go",
    ],
)
async def test_extreme_values_in_every_presenter_are_shown(
    http: httpx.AsyncClient, url: str
) -> None:
    answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 0, body
    # Ids and counts pass as the services gave them.
    assert str(INT64_MAX) in answer.text


async def test_extreme_times_are_clamped_to_the_displayable_range(
    http: httpx.AsyncClient,
) -> None:
    assert EARLIEST_SECOND < 0 < LATEST_SECOND
    article = (await http.get("/articles/pub/1")).json()["data"]
    assert (article["ctime"], article["utime"]) == (EARLIEST_SHANGHAI, LATEST_SHANGHAI)
    listed = (await http.post("/articles/list", json={})).json()["data"]
    assert listed[0]["utime"] == LATEST_SHANGHAI
    hits = (await http.get("/search/query", params={"q": "go"})).json()["data"]["hits"]
    assert [hit["utime"] for hit in hits] == [LATEST_SHANGHAI, EARLIEST_SHANGHAI, LATEST_SHANGHAI]
    # A score that is not a number is shown as null, not a failed page.
    assert [hit["score"] for hit in hits] == [None, None, None]
    relations = (await http.get("/follow/followers")).json()["data"]["relations"]
    assert [r["ctime"] for r in relations] == [
        LATEST_SHANGHAI,
        EARLIEST_SHANGHAI,
        "1970-01-01 07:59:59",
    ]
