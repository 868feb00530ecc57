"""The feed and the tags through the whole gateway over fakes.

``GET /feed`` and the ``/tags`` routes over in-process fakes of the feed and tag stubs that
record what the gateway asked and refuse as the real services do (gRPC errors with their
kinds, reasons and messages): the answers' shapes, the edge's validation, each mapped
refusal, the login requirement and the OpenAPI document.
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
from gateway.tests.conftest import USER_AGENT, bearer, client_for, fake_stubs, make_settings
from gateway.tests.conftest import rpc_error as as_rpc_error
from kit.errors import (
    AppError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from webook.feed.v1 import feed_pb2
from webook.tag.v1 import tag_pb2

pytestmark = pytest.mark.integration

FEED = "feed.webook"
TAG = "tag.webook"
AT_MS = 1_767_323_045_000
CALLER = 3


@dataclass
class FakeFeed:
    """The feed service's stub: one page of each kind of entry; ``refusal`` fails every call."""

    asked: list[feed_pb2.GetFeedRequest] = field(default_factory=list)
    refusal: AppError | None = None

    async def GetFeed(self, request: feed_pb2.GetFeedRequest, **_: Any) -> feed_pb2.GetFeedResponse:
        """Three entries, one of a type the gateway does not know, and a next cursor."""
        self.asked.append(request)
        if self.refusal is not None:
            raise as_rpc_error(self.refusal)
        return feed_pb2.GetFeedResponse(
            events=[
                feed_pb2.FeedEvent(
                    event_id="ap-7",
                    at_ms=AT_MS,
                    article_published=feed_pb2.ArticlePublishedItem(
                        actor=5, article_id=7, title="Hello"
                    ),
                ),
                feed_pb2.FeedEvent(
                    event_id="al-6-8",
                    at_ms=AT_MS - 1,
                    article_liked=feed_pb2.ArticleLikedItem(
                        actor=6, article_id=8, title="Mine", recipient=request.uid
                    ),
                ),
                # A newer feed service's type: left out.
                feed_pb2.FeedEvent(event_id="xx-1", at_ms=AT_MS - 2),
                feed_pb2.FeedEvent(
                    event_id=f"uf-9-{request.uid}",
                    at_ms=AT_MS - 3,
                    user_followed=feed_pb2.UserFollowedItem(actor=9, recipient=request.uid),
                ),
            ],
            next_cursor="c-next",
        )


@dataclass
class FakeTag:
    """The tag service's stub: records every request; ``refusal`` fails every call."""

    asked: list[Any] = field(default_factory=list)
    refusal: AppError | None = None

    def _record(self, request: Any) -> None:
        self.asked.append(request)
        if self.refusal is not None:
            raise as_rpc_error(self.refusal)

    @staticmethod
    def tag(tag_id: int, uid: int, name: str) -> tag_pb2.Tag:
        """Tag ``tag_id`` of ``uid``."""
        return tag_pb2.Tag(id=tag_id, uid=uid, name=name, ctime_ms=AT_MS)

    async def CreateTag(
        self, request: tag_pb2.CreateTagRequest, **_: Any
    ) -> tag_pb2.CreateTagResponse:
        """A new tag 11 of that name."""
        self._record(request)
        return tag_pb2.CreateTagResponse(tag=self.tag(11, request.uid, request.name), created=True)

    async def ListUserTags(
        self, request: tag_pb2.ListUserTagsRequest, **_: Any
    ) -> tag_pb2.ListUserTagsResponse:
        """Two tags of the caller."""
        self._record(request)
        return tag_pb2.ListUserTagsResponse(
            tags=[self.tag(12, request.uid, "go"), self.tag(11, request.uid, "python")]
        )

    async def AttachTags(
        self, request: tag_pb2.AttachTagsRequest, **_: Any
    ) -> tag_pb2.AttachTagsResponse:
        """The asked ids as the resource's set, version 2."""
        self._record(request)
        return tag_pb2.AttachTagsResponse(
            resource=tag_pb2.ResourceTags(
                biz=request.biz,
                biz_id=request.biz_id,
                uid=request.uid,
                tags=[self.tag(i, request.uid, f"t{i}") for i in sorted(set(request.tag_ids))],
                version=2,
                utime_ms=AT_MS,
            )
        )

    async def GetResourceTags(
        self, request: tag_pb2.GetResourceTagsRequest, **_: Any
    ) -> tag_pb2.GetResourceTagsResponse:
        """Article 7 carries tag 11 of user 5; anything else was never tagged."""
        self._record(request)
        if (request.biz, request.biz_id) != ("article", 7):
            return tag_pb2.GetResourceTagsResponse(
                resource=tag_pb2.ResourceTags(biz=request.biz, biz_id=request.biz_id)
            )
        return tag_pb2.GetResourceTagsResponse(
            resource=tag_pb2.ResourceTags(
                biz="article",
                biz_id=7,
                uid=5,
                tags=[self.tag(11, 5, "python")],
                version=1,
                utime_ms=AT_MS,
            )
        )

    async def ListResourcesByTag(
        self, request: tag_pb2.ListResourcesByTagRequest, **_: Any
    ) -> tag_pb2.ListResourcesByTagResponse:
        """Two articles under the tag, and a next cursor."""
        self._record(request)
        return tag_pb2.ListResourcesByTagResponse(
            resources=[
                tag_pb2.TaggedResource(biz="article", biz_id=8, tagged_ms=AT_MS),
                tag_pb2.TaggedResource(biz="article", biz_id=7, tagged_ms=AT_MS - 1),
            ],
            next_cursor="c1.next",
        )


@dataclass
class Fakes:
    """The fakes behind one gateway."""

    feed: FakeFeed = field(default_factory=FakeFeed)
    tag: FakeTag = field(default_factory=FakeTag)


@pytest.fixture
def fakes() -> Fakes:
    """Fresh fakes."""
    return Fakes()


@pytest.fixture
async def app(redis_url: str, redis_client: aioredis.Redis, fakes: Fakes) -> AsyncIterator[FastAPI]:
    """The gateway over the fakes."""
    stubs = fake_stubs(feed=fakes.feed, tag=fakes.tag)
    application = create_app(make_settings(redis_url, free_port()), stubs=stubs)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway, logged in as :data:`CALLER`."""
    token = app.state.runtime.tokens.issue(CALLER, USER_AGENT).access
    async with client_for(app, headers=bearer(token)) as client:
        yield client


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway that is not logged in."""
    async with client_for(app) as client:
        yield client


def refused(msg: str) -> dict[str, Any]:
    """The envelope of a code-4 refusal."""
    return {"code": 4, "msg": msg, "data": None}


SYSTEM_ERROR = {"code": 5, "msg": "system error", "data": None}
BAD_CURSOR = refused(
    "invalid cursor: pass the nextCursor of the previous page, or none for the first page"
)


# --- the feed ---------------------------------------------------------------------------


async def test_the_feed_is_a_page_of_the_callers_entries(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await http.get("/feed", params={"cursor": "c-prev", "limit": 3})

    assert response.status_code == 200
    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": {
            "items": [
                {
                    "eventId": "ap-7",
                    "type": "article_published",
                    "actor": 5,
                    "articleId": 7,
                    "title": "Hello",
                    "recipient": None,
                    "atMs": AT_MS,
                },
                {
                    "eventId": "al-6-8",
                    "type": "article_liked",
                    "actor": 6,
                    "articleId": 8,
                    "title": "Mine",
                    "recipient": CALLER,
                    "atMs": AT_MS - 1,
                },
                {
                    "eventId": f"uf-9-{CALLER}",
                    "type": "user_followed",
                    "actor": 9,
                    "articleId": None,
                    "title": None,
                    "recipient": CALLER,
                    "atMs": AT_MS - 3,
                },
            ],
            "nextCursor": "c-next",
        },
    }
    [asked] = fakes.feed.asked
    assert (asked.uid, asked.cursor, asked.limit) == (CALLER, "c-prev", 3)


async def test_the_first_page_by_default(http: httpx.AsyncClient, fakes: Fakes) -> None:
    assert (await http.get("/feed")).json()["code"] == 0
    [asked] = fakes.feed.asked
    assert (asked.uid, asked.cursor, asked.limit) == (CALLER, "", 20)


BAD_FEED_PAGES: list[tuple[dict[str, Any], str]] = [
    ({"limit": 0}, "invalid limit"),
    ({"limit": 101}, "invalid limit"),
    ({"limit": "ten"}, "limit must be an integer"),
    ({"limit": "1.5"}, "limit must be an integer"),
    ({"cursor": "c" * 257}, "cursor is too long (at most 256 characters)"),
]


async def test_bad_pages_of_the_feed_are_refused_at_the_edge(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    # One gateway for every case: starting one per case would cost more than the checks.
    for params, problem in BAD_FEED_PAGES:
        answer = (await http.get("/feed", params=params)).json()
        assert answer == refused(problem), params
    assert fakes.feed.asked == []


FEED_REFUSALS: list[tuple[AppError, dict[str, Any]]] = [
    (
        InvalidArgument(
            "FEED_INVALID_CURSOR", "cursor is not one GetFeed returned (x)", domain=FEED
        ),
        BAD_CURSOR,
    ),
    (
        InvalidArgument("FEED_INVALID_LIMIT", "limit must be 1..100", domain=FEED),
        refused("limit must be 1..100"),
    ),
    (Unavailable("FEED_UNAVAILABLE", "follow is down", domain=FEED), SYSTEM_ERROR),
    (Unavailable("FEED_CONCURRENT_CONFLICT", "collided", domain=FEED), SYSTEM_ERROR),
    # The gateway always names the caller: a refused user is the gateway's bug.
    (InvalidArgument("FEED_INVALID_USER", "uid must be a user id", domain=FEED), SYSTEM_ERROR),
]


async def test_the_feed_services_refusals(http: httpx.AsyncClient, fakes: Fakes) -> None:
    for refusal, answer in FEED_REFUSALS:
        fakes.feed.refusal = refusal
        response = await http.get("/feed", params={"cursor": "c-bad"})
        assert response.status_code == 200
        assert response.json() == answer, refusal.reason
    assert len(fakes.feed.asked) == len(FEED_REFUSALS)


# --- tags -------------------------------------------------------------------------------


def tag_json(tag_id: int, uid: int, name: str) -> dict[str, Any]:
    """A tag as the routes show it."""
    return {"id": tag_id, "uid": uid, "name": name, "ctimeMs": AT_MS}


async def test_create_a_tag(http: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await http.post("/tags/create", json={"name": " python "})

    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": {"tag": tag_json(11, CALLER, " python "), "created": True},
    }
    [asked] = fakes.tag.asked
    assert isinstance(asked, tag_pb2.CreateTagRequest)
    assert (asked.uid, asked.name) == (CALLER, " python ")


async def test_the_callers_tags(http: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await http.get("/tags/mine")

    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": [tag_json(12, CALLER, "go"), tag_json(11, CALLER, "python")],
    }
    [asked] = fakes.tag.asked
    assert isinstance(asked, tag_pb2.ListUserTagsRequest)
    assert asked.uid == CALLER


async def test_attach_replaces_the_set(http: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await http.post("/tags/attach", json={"bizId": 7, "tagIds": [12, 11, 12]})

    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": {
            "biz": "article",
            "bizId": 7,
            "uid": CALLER,
            "tags": [tag_json(11, CALLER, "t11"), tag_json(12, CALLER, "t12")],
            "version": 2,
            "utimeMs": AT_MS,
        },
    }
    cleared = await http.post("/tags/attach", json={"biz": "article", "bizId": 7, "tagIds": []})
    assert cleared.json()["data"]["tags"] == []
    first, second = fakes.tag.asked
    assert isinstance(first, tag_pb2.AttachTagsRequest)
    assert (first.uid, first.biz, first.biz_id, list(first.tag_ids)) == (
        CALLER,
        "article",
        7,
        [12, 11, 12],
    )
    assert list(second.tag_ids) == []


async def test_a_resources_tags(http: httpx.AsyncClient, fakes: Fakes) -> None:
    tagged = await http.get("/tags/resource", params={"biz": "article", "bizId": 7})
    never = await http.get("/tags/resource", params={"bizId": 8})

    assert tagged.json() == {
        "code": 0,
        "msg": "OK",
        "data": {
            "biz": "article",
            "bizId": 7,
            "uid": 5,
            "tags": [tag_json(11, 5, "python")],
            "version": 1,
            "utimeMs": AT_MS,
        },
    }
    assert never.json()["data"] == {
        "biz": "article",
        "bizId": 8,
        "uid": 0,
        "tags": [],
        "version": 0,
        "utimeMs": 0,
    }
    asked = [(r.uid, r.biz, r.biz_id) for r in fakes.tag.asked]
    assert asked == [(CALLER, "article", 7), (CALLER, "article", 8)]


async def test_a_page_of_the_resources_under_a_tag(http: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await http.get("/tags/11/resources", params={"cursor": "c1.prev", "limit": 2})

    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": {
            "resources": [
                {"biz": "article", "bizId": 8, "taggedMs": AT_MS},
                {"biz": "article", "bizId": 7, "taggedMs": AT_MS - 1},
            ],
            "nextCursor": "c1.next",
        },
    }
    assert (await http.get("/tags/11/resources")).json()["code"] == 0
    first, second = fakes.tag.asked
    assert isinstance(first, tag_pb2.ListResourcesByTagRequest)
    assert (first.uid, first.tag_id, first.cursor, first.limit) == (CALLER, 11, "c1.prev", 2)
    assert (second.cursor, second.limit) == ("", 20)


BAD_TAG_REQUESTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/tags/create", {"json": {}}, "missing field: name"),
    ("POST", "/tags/create", {"json": {"name": ""}}, "invalid name"),
    ("POST", "/tags/create", {"json": {"name": 7}}, "name must be a string"),
    (
        "POST",
        "/tags/create",
        {"json": {"name": "x" * 129}},
        "name is too long (at most 128 characters)",
    ),
    ("POST", "/tags/attach", {"json": {"bizId": 7}}, "missing field: tagIds"),
    ("POST", "/tags/attach", {"json": {"tagIds": [1]}}, "missing field: bizId"),
    ("POST", "/tags/attach", {"json": {"bizId": 0, "tagIds": [1]}}, "invalid bizId"),
    ("POST", "/tags/attach", {"json": {"bizId": 7, "tagIds": [0]}}, "invalid tagIds.0"),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": ["1"]}},
        "tagIds.0 must be an integer",
    ),
    ("POST", "/tags/attach", {"json": {"bizId": 7, "tagIds": 1}}, "tagIds must be a list"),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": list(range(1, 102))}},
        "invalid tagIds",
    ),
    ("POST", "/tags/attach", {"json": {"biz": "", "bizId": 7, "tagIds": []}}, "invalid biz"),
    ("GET", "/tags/resource", {}, "missing field: bizId"),
    ("GET", "/tags/resource", {"params": {"bizId": "7.0"}}, "bizId must be an integer"),
    ("GET", "/tags/resource", {"params": {"bizId": 2**63}}, "invalid bizId"),
    ("GET", "/tags/0/resources", {}, "invalid tagId"),
    ("GET", "/tags/x/resources", {}, "tagId must be an integer"),
    ("GET", "/tags/11/resources", {"params": {"limit": 0}}, "invalid limit"),
    (
        "GET",
        "/tags/11/resources",
        {"params": {"cursor": "c" * 257}},
        "cursor is too long (at most 256 characters)",
    ),
]


async def test_bad_tag_requests_are_refused_at_the_edge(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    for method, path, request_args, problem in BAD_TAG_REQUESTS:
        response = await http.request(method, path, **request_args)
        assert response.json() == refused(problem), (method, path, request_args)
    assert fakes.tag.asked == []


TAG_REFUSALS: list[tuple[str, str, dict[str, Any], AppError, dict[str, Any]]] = [
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": [11]}},
        PermissionDenied("TAG_NOT_OWNER", "only the article's author may tag it", domain=TAG),
        refused("only the article's author may tag it"),
    ),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": [99]}},
        NotFound("TAG_NOT_FOUND", "no tags [99] among yours", domain=TAG),
        refused("no tags [99] among yours"),
    ),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 70, "tagIds": [11]}},
        NotFound(
            "TAG_TARGET_NOT_FOUND",
            "article 70 does not exist or is not published",
            domain=TAG,
        ),
        refused("article 70 does not exist or is not published"),
    ),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": list(range(1, 22))}},
        InvalidArgument("TAG_INVALID_TAGS", "a resource carries at most 20 tags", domain=TAG),
        refused("a resource carries at most 20 tags"),
    ),
    (
        "POST",
        "/tags/attach",
        {"json": {"bizId": 7, "tagIds": [11]}},
        Unavailable("TAG_UNAVAILABLE", "article is down", domain=TAG),
        SYSTEM_ERROR,
    ),
    (
        "POST",
        "/tags/create",
        {"json": {"name": "\u200b"}},
        InvalidArgument("TAG_INVALID_NAME", "name must not contain control characters", domain=TAG),
        refused("name must not contain control characters"),
    ),
    (
        "POST",
        "/tags/create",
        {"json": {"name": "one too many"}},
        FailedPrecondition("TAG_TOO_MANY", "a user may have at most 1000 tags", domain=TAG),
        refused("a user may have at most 1000 tags"),
    ),
    (
        "GET",
        "/tags/mine",
        {},
        Unavailable("TAG_CONCURRENT_CONFLICT", "collided", domain=TAG),
        SYSTEM_ERROR,
    ),
    (
        "GET",
        "/tags/resource",
        {"params": {"biz": "video", "bizId": 7}},
        InvalidArgument("TAG_INVALID_BIZ", "biz must be one of ['article']", domain=TAG),
        refused("biz must be one of ['article']"),
    ),
    (
        "GET",
        "/tags/99/resources",
        {},
        NotFound("TAG_NOT_FOUND", "no tag 99 among yours", domain=TAG),
        refused("no tag 99 among yours"),
    ),
    (
        "GET",
        "/tags/11/resources",
        {"params": {"cursor": "c1.other"}},
        InvalidArgument("TAG_INVALID_CURSOR", "cursor belongs to another tag", domain=TAG),
        BAD_CURSOR,
    ),
    (
        "GET",
        "/tags/mine",
        {},
        InvalidArgument("TAG_INVALID_USER", "uid must be a user id", domain=TAG),
        SYSTEM_ERROR,
    ),
]


async def test_the_tag_services_refusals(http: httpx.AsyncClient, fakes: Fakes) -> None:
    for method, path, request_args, refusal, answer in TAG_REFUSALS:
        fakes.tag.refusal = refusal
        response = await http.request(method, path, **request_args)
        assert response.status_code == 200
        assert response.json() == answer, (path, refusal.reason)
    assert len(fakes.tag.asked) == len(TAG_REFUSALS)


# --- login and the OpenAPI document -----------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/feed", None),
    ("POST", "/tags/create", {"name": "go"}),
    ("GET", "/tags/mine", None),
    ("POST", "/tags/attach", {"bizId": 7, "tagIds": [11]}),
    ("GET", "/tags/resource?bizId=7", None),
    ("GET", "/tags/11/resources", None),
]


async def test_the_feed_and_tags_need_a_login(anonymous: httpx.AsyncClient, fakes: Fakes) -> None:
    for method, path, body in ROUTES:
        response = await anonymous.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.content == b""
    assert fakes.feed.asked == []
    assert fakes.tag.asked == []


async def test_the_routes_are_documented_in_openapi(anonymous: httpx.AsyncClient) -> None:
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    documented = {
        ("get", "/feed", "feed"),
        ("post", "/tags/create", "tags"),
        ("get", "/tags/mine", "tags"),
        ("post", "/tags/attach", "tags"),
        ("get", "/tags/resource", "tags"),
        ("get", "/tags/{tagId}/resources", "tags"),
    }
    for method, path, tag in documented:
        operation = paths[path][method]
        assert operation["security"] == [{"accessToken": []}]
        assert operation["tags"] == [tag]
        assert {"200", "401", "429"} <= set(operation["responses"])
        assert "422" not in operation["responses"]
    feed_params = {p["name"] for p in paths["/feed"]["get"]["parameters"]}
    assert feed_params == {"cursor", "limit"}
