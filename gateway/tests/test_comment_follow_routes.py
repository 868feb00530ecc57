"""Routes ``/comments/...`` and ``/follow/...`` of the whole gateway over fake services.

The comment and follow services are in-process fakes of their stubs that keep their data in
dicts and refuse what the real services refuse (as gRPC errors with the same kinds and
messages); user lookups go to the fake user service on a real port. The caller logs in
with a token the app issues. The real services behind the real gateway are covered by
``tests/e2e/test_comments_follow.py``.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from gateway.app import create_app
from gateway.tests.conftest import (
    USER_AGENT,
    RunningUserService,
    bearer,
    client_for,
    fake_stubs,
    make_settings,
    rpc_error,
)
from kit.errors import InvalidArgument, NotFound, PermissionDenied
from webook.comment.v1 import comment_pb2
from webook.follow.v1 import follow_pb2
from webook.user.v1.user_pb2_grpc import UserServiceStub

pytestmark = pytest.mark.integration

CTIME_MS = 1_767_323_045_000
Page = TypeVar("Page", follow_pb2.GetFolloweeResponse, follow_pb2.GetFollowerResponse)
_TAG = re.compile(r"<[^>]*>")


class FakeComments:
    """The comment service's stub: comments in a dict, its content and ownership rules."""

    def __init__(self) -> None:
        self.comments: dict[int, comment_pb2.Comment] = {}

    def _thread(self, root_id: int) -> list[comment_pb2.Comment]:
        return sorted(
            (c for c in self.comments.values() if c.root_id == root_id), key=lambda c: c.id
        )

    async def CreateComment(
        self, request: comment_pb2.CreateCommentRequest, **_: Any
    ) -> comment_pb2.CreateCommentResponse:
        """Tags removed, ``<>&`` escaped; a reply stays on its parent's object."""
        new = comment_pb2.Comment()
        new.CopyFrom(request.comment)
        new.content = html.escape(_TAG.sub("", new.content).strip(), quote=False)
        if not new.content:
            raise rpc_error(InvalidArgument("COMMENT_INVALID_CONTENT", "a comment cannot be empty"))
        if new.parent_id:
            parent = self.comments.get(new.parent_id)
            if parent is None:
                raise rpc_error(NotFound("COMMENT_PARENT_NOT_FOUND", "parent comment not found"))
            if (parent.biz, parent.biz_id) != (new.biz, new.biz_id):
                raise rpc_error(
                    InvalidArgument("COMMENT_PARENT_MISMATCH", "a reply must be on the same object")
                )
            new.root_id = parent.root_id or parent.id
        new.id = max(self.comments, default=0) + 1
        new.ctime_ms = CTIME_MS
        self.comments[new.id] = new
        return comment_pb2.CreateCommentResponse(id=new.id)

    async def GetCommentList(
        self, request: comment_pb2.GetCommentListRequest, **_: Any
    ) -> comment_pb2.GetCommentListResponse:
        """Top-level comments below ``min_id``, newest first, each with its first replies."""
        roots = sorted(
            (
                c
                for c in self.comments.values()
                if (c.biz, c.biz_id, c.root_id) == (request.biz, request.biz_id, 0)
                and (not request.min_id or c.id < request.min_id)
            ),
            key=lambda c: -c.id,
        )[: request.limit]
        page = []
        for root in roots:
            listed = comment_pb2.Comment()
            listed.CopyFrom(root)
            replies = self._thread(root.id)
            listed.reply_cnt = len(replies)
            listed.children.extend(replies[: request.replies_per_comment])
            page.append(listed)
        return comment_pb2.GetCommentListResponse(comments=page)

    async def GetMoreReplies(
        self, request: comment_pb2.GetMoreRepliesRequest, **_: Any
    ) -> comment_pb2.GetMoreRepliesResponse:
        """Replies of a thread after ``max_id``, oldest first."""
        if request.root_id not in self.comments:
            raise rpc_error(NotFound("COMMENT_NOT_FOUND", "comment thread not found"))
        after = [c for c in self._thread(request.root_id) if c.id > request.max_id]
        return comment_pb2.GetMoreRepliesResponse(replies=after[: request.limit])

    async def DeleteComment(
        self, request: comment_pb2.DeleteCommentRequest, **_: Any
    ) -> comment_pb2.DeleteCommentResponse:
        """The author's comment and every reply below it."""
        comment = self.comments.get(request.id)
        if comment is None:
            raise rpc_error(NotFound("COMMENT_NOT_FOUND", "comment not found"))
        if comment.uid != request.uid:
            raise rpc_error(
                PermissionDenied("COMMENT_NOT_AUTHOR", "only the author can delete a comment")
            )
        below = {request.id}
        for c in sorted(self.comments.values(), key=lambda c: c.id):
            if c.parent_id in below:
                below.add(c.id)
        for cid in below:
            del self.comments[cid]
        return comment_pb2.DeleteCommentResponse()

    async def CountComments(
        self, request: comment_pb2.CountCommentsRequest, **_: Any
    ) -> comment_pb2.CountCommentsResponse:
        """Comments and replies per object, for the objects that have any."""
        counts: dict[int, int] = {}
        for c in self.comments.values():
            if c.biz == request.biz and c.biz_id in request.biz_ids:
                counts[c.biz_id] = counts.get(c.biz_id, 0) + 1
        return comment_pb2.CountCommentsResponse(counts=counts)


class FakeFollow:
    """The follow service's stub: relations in a dict keyed by (follower, followee)."""

    def __init__(self) -> None:
        self.relations: dict[tuple[int, int], int] = {}  # -> relation id (newest: highest)
        self.next_id = 1

    async def Follow(
        self, request: follow_pb2.FollowRequest, **_: Any
    ) -> follow_pb2.FollowResponse:
        """Idempotent; following oneself is refused."""
        if request.follower == request.followee:
            raise rpc_error(InvalidArgument("FOLLOW_SELF", "you cannot follow yourself"))
        pair = (request.follower, request.followee)
        if pair not in self.relations:
            self.relations[pair] = self.next_id
            self.next_id += 1
        return follow_pb2.FollowResponse()

    async def CancelFollow(
        self, request: follow_pb2.CancelFollowRequest, **_: Any
    ) -> follow_pb2.CancelFollowResponse:
        """Idempotent."""
        self.relations.pop((request.follower, request.followee), None)
        return follow_pb2.CancelFollowResponse()

    def _page(
        self,
        response: type[Page],
        side: int,
        uid: int,
        request: follow_pb2.GetFolloweeRequest | follow_pb2.GetFollowerRequest,
    ) -> Page:
        """Relations with ``uid`` on ``side`` (0 follower, 1 followee), newest first, below
        the request's ``min_id``; the cursor is the last one's id when the page is full."""
        min_id, limit = request.min_id, request.limit
        found = sorted(
            (
                (rid, pair)
                for pair, rid in self.relations.items()
                if pair[side] == uid and (not min_id or rid < min_id)
            ),
            reverse=True,
        )[:limit]
        return response(
            relations=[
                follow_pb2.FollowRelation(follower=f, followee=e, ctime_ms=CTIME_MS + rid)
                for rid, (f, e) in found
            ],
            next_cursor=found[-1][0] if len(found) == limit else 0,
        )

    async def GetFollowee(
        self, request: follow_pb2.GetFolloweeRequest, **_: Any
    ) -> follow_pb2.GetFolloweeResponse:
        """Whom ``follower`` follows."""
        return self._page(follow_pb2.GetFolloweeResponse, 0, request.follower, request)

    async def GetFollower(
        self, request: follow_pb2.GetFollowerRequest, **_: Any
    ) -> follow_pb2.GetFollowerResponse:
        """Who follows ``followee``."""
        return self._page(follow_pb2.GetFollowerResponse, 1, request.followee, request)

    async def FollowInfo(
        self, request: follow_pb2.FollowInfoRequest, **_: Any
    ) -> follow_pb2.FollowInfoResponse:
        """Both directions between two users."""
        return follow_pb2.FollowInfoResponse(
            following=(request.follower, request.followee) in self.relations,
            followed_by=(request.followee, request.follower) in self.relations,
        )

    async def GetFollowStatic(
        self, request: follow_pb2.GetFollowStaticRequest, **_: Any
    ) -> follow_pb2.GetFollowStaticResponse:
        """Counted from the relations."""
        return follow_pb2.GetFollowStaticResponse(
            static=follow_pb2.FollowStatic(
                uid=request.uid,
                followers=sum(e == request.uid for _, e in self.relations),
                followees=sum(f == request.uid for f, _ in self.relations),
            )
        )


@pytest.fixture
async def app(
    redis_url: str, redis_client: aioredis.Redis, user_service: RunningUserService
) -> AsyncIterator[FastAPI]:
    """The gateway over the fakes, users 1, 2 and 3 known to the user service."""
    for uid in (1, 2, 3):
        user_service.servicer._create(email=f"u{uid}@example.com")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{user_service.port}")
    stubs = fake_stubs(user=UserServiceStub(channel), comment=FakeComments(), follow=FakeFollow())
    application = create_app(make_settings(redis_url, free_port()), stubs=stubs)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        await channel.close(None)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway."""
    async with client_for(app) as client:
        yield client


@pytest.fixture
def as_user(app: FastAPI) -> Any:
    """Headers of a request made by a logged-in ``uid``."""

    def headers(uid: int) -> dict[str, str]:
        return bearer(app.state.runtime.tokens.issue(uid, USER_AGENT).access)

    return headers


async def ok(response: httpx.Response) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


async def test_comment_routes(http: httpx.AsyncClient, as_user: Any) -> None:
    created = await ok(
        await http.post(
            "/comments/create", json={"bizId": 7, "content": "<i>hi</i> & bye"}, headers=as_user(1)
        )
    )
    root = created["id"]
    reply = await ok(
        await http.post(
            "/comments/create",
            json={"bizId": 7, "content": "answer", "parentId": root},
            headers=as_user(2),
        )
    )
    page = await ok(await http.get("/comments/list", params={"bizId": 7}))
    assert len(page) == 1
    assert page[0]["content"] == "hi &amp; bye"
    assert page[0]["replyCnt"] == 1
    assert [r["id"] for r in page[0]["replies"]] == [reply["id"]]
    assert len(page[0]["ctime"]) == 19
    replies = await ok(await http.get("/comments/replies", params={"rootId": root}))
    assert [r["uid"] for r in replies] == [2]
    counts = await ok(await http.get("/comments/count", params=[("bizIds", 7), ("bizIds", 8)]))
    assert counts == [{"bizId": 7, "count": 2}, {"bizId": 8, "count": 0}]

    refused = await http.post("/comments/delete", json={"id": root}, headers=as_user(2))
    assert refused.json()["code"] == 4
    other = await http.post(
        "/comments/create",
        json={"bizId": 8, "content": "wrong article", "parentId": root},
        headers=as_user(2),
    )
    assert other.json()["code"] == 4
    empty = await http.post(
        "/comments/create", json={"bizId": 7, "content": "   "}, headers=as_user(1)
    )
    assert empty.json() == {"code": 4, "msg": "a comment cannot be empty", "data": None}
    bad = await http.post(
        "/comments/create", json={"bizId": "x", "content": "a"}, headers=as_user(1)
    )
    assert bad.json()["code"] == 4
    anonymous = await http.post("/comments/create", json={"bizId": 7, "content": "a"})
    assert anonymous.status_code == 401
    assert anonymous.content == b""

    await ok(await http.post("/comments/delete", json={"id": root}, headers=as_user(1)))
    assert await ok(await http.get("/comments/list", params={"bizId": 7})) == []
    missing = await http.get("/comments/replies", params={"rootId": root})
    assert missing.json()["code"] == 4


async def test_follow_routes(http: httpx.AsyncClient, as_user: Any) -> None:
    for fan in (2, 3):
        await ok(await http.post("/follow/follow", json={"followee": 1}, headers=as_user(fan)))
    await ok(await http.post("/follow/follow", json={"followee": 1}, headers=as_user(2)))
    await ok(await http.post("/follow/follow", json={"followee": 2}, headers=as_user(1)))

    counts = await ok(await http.get("/follow/counts", params={"uid": 1}))
    assert counts == {"uid": 1, "followers": 2, "followees": 1}
    followers = await ok(
        await http.get("/follow/followers", params={"limit": 1}, headers=as_user(1))
    )
    assert [r["follower"] for r in followers["relations"]] == [3]
    more = await ok(
        await http.get(
            "/follow/followers",
            params={"limit": 1, "minId": followers["nextCursor"]},
            headers=as_user(1),
        )
    )
    assert [r["follower"] for r in more["relations"]] == [2]
    followees = await ok(await http.get("/follow/followees", params={"uid": 2}, headers=as_user(1)))
    assert [r["followee"] for r in followees["relations"]] == [1]
    status = await ok(await http.get("/follow/status", params={"uid": 2}, headers=as_user(1)))
    assert status == {"following": True, "followedBy": True}

    await ok(await http.post("/follow/cancel", json={"followee": 1}, headers=as_user(2)))
    await ok(await http.post("/follow/cancel", json={"followee": 1}, headers=as_user(2)))
    status = await ok(await http.get("/follow/status", params={"uid": 1}, headers=as_user(2)))
    assert status == {"following": False, "followedBy": True}
    assert (await ok(await http.get("/follow/counts", params={"uid": 1})))["followers"] == 1

    itself = await http.post("/follow/follow", json={"followee": 1}, headers=as_user(1))
    assert itself.json() == {"code": 4, "msg": "you cannot follow yourself", "data": None}
    unknown = await http.post("/follow/follow", json={"followee": 99}, headers=as_user(1))
    assert unknown.json() == {"code": 4, "msg": "user not found", "data": None}
    assert (await http.post("/follow/follow", json={"followee": 0}, headers=as_user(1))).json()[
        "code"
    ] == 4
    assert (await http.get("/follow/followers")).status_code == 401


async def test_routes_are_documented(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert {
        "/comments/create",
        "/comments/list",
        "/comments/replies",
        "/comments/delete",
        "/comments/count",
        "/follow/follow",
        "/follow/cancel",
        "/follow/followees",
        "/follow/followers",
        "/follow/status",
        "/follow/counts",
    } <= set(spec["paths"])
