"""Comments and follows end to end: every route, through the gateway and the services."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import User, logged_in

pytestmark = pytest.mark.e2e


async def _user(client: httpx.AsyncClient) -> User:
    return await logged_in(client, "reader")


async def _article(client: httpx.AsyncClient, author: User) -> int:
    answer = await client.post(
        "/articles/publish", json={"title": "t", "content": "<p>c</p>"}, headers=author.headers
    )
    aid = answer.json()["data"]
    assert isinstance(aid, int)
    return aid


async def test_comment_threads_replies_counts_and_delete(client: httpx.AsyncClient) -> None:
    author, alice, bob = await _user(client), await _user(client), await _user(client)
    aid, other_aid = await _article(client, author), await _article(client, author)

    async def create(who: User, content: str, parent: int = 0, biz_id: int = aid) -> dict[str, Any]:
        answer = await client.post(
            "/comments/create",
            json={"biz": "article", "bizId": biz_id, "content": content, "parentId": parent},
            headers=who.headers,
        )
        assert answer.status_code == 200
        return dict(answer.json())

    top = (await create(alice, "first! <script>x</script>"))["data"]["id"]
    replies = [(await create(bob, f"reply {i}", top))["data"]["id"] for i in range(5)]
    nested = (await create(alice, "reply to a reply", replies[0]))["data"]["id"]

    listed = (await client.get("/comments/list", params={"bizId": aid, "replies": 2})).json()
    assert listed["code"] == 0
    thread = listed["data"][0]
    assert thread["id"] == top
    assert "<script>" not in thread["content"]
    assert thread["uid"] == alice.uid
    assert [r["id"] for r in thread["replies"]] == replies[:2]
    more = await client.get(
        "/comments/replies", params={"rootId": top, "maxId": replies[1], "limit": 10}
    )
    assert [r["id"] for r in more.json()["data"]] == [*replies[2:], nested]

    counts = (await client.get("/comments/count", params={"bizIds": [aid, other_aid]})).json()
    assert {c["bizId"]: c["count"] for c in counts["data"]} == {aid: 7, other_aid: 0}

    # Refusals: replying to a comment of another article; deleting someone else's comment.
    wrong_article = await create(bob, "cross-post", top, biz_id=other_aid)
    assert wrong_article["code"] == 4
    unknown_parent = await create(bob, "to nothing", 10**12)
    assert unknown_parent["code"] == 4
    stolen = await client.post("/comments/delete", json={"id": top}, headers=bob.headers)
    assert stolen.json()["code"] == 4
    empty = await create(bob, "   ")
    assert empty["code"] == 4

    # Deleting a comment deletes its sub-tree.
    deleted = await client.post("/comments/delete", json={"id": replies[0]}, headers=bob.headers)
    assert deleted.json()["code"] == 0
    counts = (await client.get("/comments/count", params={"bizIds": [aid]})).json()
    assert counts["data"][0]["count"] == 5
    gone = await client.post("/comments/delete", json={"id": nested}, headers=alice.headers)
    assert gone.json()["code"] == 4

    anonymous = await client.post(
        "/comments/create",
        json={"bizId": aid, "content": "hi"},
        headers={"Authorization": "Bearer null"},
    )
    assert anonymous.status_code == 401


async def test_follow_cancel_lists_status_counts(client: httpx.AsyncClient) -> None:
    star, fans = await _user(client), [await _user(client) for _ in range(3)]
    for fan in fans:
        for _ in range(2):  # following twice counts once
            answer = await client.post(
                "/follow/follow", json={"followee": star.uid}, headers=fan.headers
            )
            assert answer.json()["code"] == 0

    counts = (await client.get("/follow/counts", params={"uid": star.uid})).json()["data"]
    assert (counts["followers"], counts["followees"]) == (3, 0)
    page = (
        await client.get(
            "/follow/followers", params={"uid": star.uid, "limit": 2}, headers=star.headers
        )
    ).json()["data"]
    assert len(page["relations"]) == 2
    rest = (
        await client.get(
            "/follow/followers",
            params={"uid": star.uid, "minId": page["nextCursor"], "limit": 2},
            headers=star.headers,
        )
    ).json()["data"]
    seen = {r["follower"] for r in page["relations"] + rest["relations"]}
    assert seen == {fan.uid for fan in fans}
    followees = (
        await client.get("/follow/followees", params={"uid": fans[0].uid}, headers=star.headers)
    ).json()["data"]
    assert [r["followee"] for r in followees["relations"]] == [star.uid]

    status = (
        await client.get("/follow/status", params={"uid": star.uid}, headers=fans[0].headers)
    ).json()["data"]
    assert status == {"following": True, "followedBy": False}

    cancel = await client.post(
        "/follow/cancel", json={"followee": star.uid}, headers=fans[0].headers
    )
    assert cancel.json()["code"] == 0
    again = await client.post(
        "/follow/cancel", json={"followee": star.uid}, headers=fans[0].headers
    )
    assert again.json()["code"] == 0
    counts = (await client.get("/follow/counts", params={"uid": star.uid})).json()["data"]
    assert counts["followers"] == 2

    self_follow = await client.post(
        "/follow/follow", json={"followee": star.uid}, headers=star.headers
    )
    assert self_follow.json()["code"] == 4
    unknown = await client.post("/follow/follow", json={"followee": 10**12}, headers=star.headers)
    assert unknown.json()["code"] == 4
    anonymous = await client.get(
        "/follow/status", params={"uid": star.uid}, headers={"Authorization": "Bearer null"}
    )
    assert anonymous.status_code == 401
