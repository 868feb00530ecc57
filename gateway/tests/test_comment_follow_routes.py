"""Routes ``/comments/...`` and ``/follow/...`` over the real comment and follow services.

The routers run on a small FastAPI app with the gateway's error handlers (``create_app``
does not include them yet); the stubs come from the routers' own dependencies, the caller
from an ``x-test-uid`` header instead of a token, and user lookups from the fake user
service on a real port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import pytest
from fastapi import FastAPI, Request

from gateway.auth.principal import Principal
from gateway.deps import get_principal, get_runtime
from gateway.errors import install_error_handlers
from gateway.routes import comments, follow
from gateway.tests.conftest import RunningUserService
from kit.config import Mode
from kit.errors import Unauthenticated
from kit.migrations import upgrade_async
from services.comment.__main__ import build_runner as build_comment_runner
from services.comment.settings import CommentSettings
from services.follow.__main__ import build_runner as build_follow_runner
from services.follow.settings import FollowSettings
from webook.comment.v1.comment_pb2_grpc import CommentServiceStub
from webook.follow.v1.follow_pb2_grpc import FollowServiceStub
from webook.user.v1.user_pb2_grpc import UserServiceStub

pytestmark = pytest.mark.integration


@dataclass
class _Settings:
    zone: ZoneInfo


@dataclass
class _Runtime:
    """What the routes read from :class:`gateway.deps.Runtime`."""

    settings: _Settings
    user: Any
    grpc_timeout: float = 5.0


def _principal(request: Request) -> Principal:
    uid = request.headers.get("x-test-uid")
    if not uid:
        raise Unauthenticated("SESSION_INVALID", "not logged in")
    return Principal(uid=int(uid), ssid="test")


@pytest.fixture
async def http(
    tmp_path: Path, redis_url: str, user_service: RunningUserService
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the two routers wired to real services on free ports."""
    for uid in (1, 2, 3):
        user_service.servicer._create(email=f"u{uid}@example.com")
    common: dict[str, Any] = {
        "mode": Mode.TEST,
        "redis_url": redis_url,
        "grpc_port": 0,
        "metrics_port": -1,
        "shutdown_grace": 1.0,
    }
    comment_db = f"sqlite+aiosqlite:///{tmp_path / 'comment.db'}"
    follow_db = f"sqlite+aiosqlite:///{tmp_path / 'follow.db'}"
    await upgrade_async("comment", comment_db)
    await upgrade_async("follow", follow_db)
    comment_runner = build_comment_runner(CommentSettings(database_url=comment_db, **common))
    follow_runner = build_follow_runner(FollowSettings(database_url=follow_db, **common))
    comment_port = await comment_runner.start()
    follow_port = await follow_runner.start()
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        for port in (comment_port, follow_port, user_service.port)
    ]
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(comments.router)
    app.include_router(follow.router)
    runtime = _Runtime(_Settings(ZoneInfo("Asia/Shanghai")), UserServiceStub(channels[2]))
    app.dependency_overrides[get_runtime] = lambda: runtime
    app.dependency_overrides[get_principal] = _principal
    app.dependency_overrides[comments.comment_stub] = lambda: CommentServiceStub(channels[0])
    app.dependency_overrides[follow.follow_stub] = lambda: FollowServiceStub(channels[1])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            yield client
    finally:
        for channel in channels:
            await channel.close(None)
        await comment_runner.stop()
        await follow_runner.stop()


def as_user(uid: int) -> dict[str, str]:
    """Headers of a request made by ``uid``."""
    return {"x-test-uid": str(uid)}


async def ok(response: httpx.Response) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


async def test_comment_routes(http: httpx.AsyncClient) -> None:
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


async def test_follow_routes(http: httpx.AsyncClient) -> None:
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
