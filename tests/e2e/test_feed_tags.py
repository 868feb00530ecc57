"""The feed and tags end to end: gateway, feed, follow, article, tag, and the broker between.

A reader follows two authors; the stack's feed service counts an author with more than one
follower as big (``WEBOOK_FEED_BIG_AUTHOR_FOLLOWERS=1`` in the e2e stack), and the second
author has two. Both publish: the first author's article is pushed into the reader's inbox
by the feed's consumer of ``webook.article.published``, the second's is merged from the
author's outbox at read time. ``GET /feed`` shows both, newest first, a page at a time with
its cursor; once the first is withdrawn it disappears. A cursor the feed did not hand out
is code 4. A like of an author's article and a new follower reach that author's feed
(interactive's ``ArticleLiked``, follow's ``UserFollowed``). Tags: an author creates a
tag, tags their own article with it and reads it back; tagging someone else's article is
refused, and search finds the article by its tag name (through the tag service's outbox
and the search service's consumer). Every wait is on a condition, with a deadline generous
for a loaded machine.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import httpx
import pytest

from devstack.infra import ManagedProcess
from kit.cache.tests.outage import eventually
from tests.e2e.conftest import User, logged_in

pytestmark = pytest.mark.e2e

# How long a publication may take to reach the feed through the broker on a loaded
# two-core machine; a bound, not a measurement.
DEADLINE_S: Final = 60.0


async def _user(client: httpx.AsyncClient, prefix: str) -> User:
    return await logged_in(client, prefix)


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


async def _publish(client: httpx.AsyncClient, author: User, title: str) -> int:
    draft = {"title": title, "content": "<p>动态里的文章</p>"}
    return int(_data(await client.post("/articles/publish", json=draft, headers=author.headers)))


async def _follow(client: httpx.AsyncClient, fan: User, star: User) -> None:
    _data(await client.post("/follow/follow", json={"followee": star.uid}, headers=fan.headers))


async def _feed(client: httpx.AsyncClient, reader: User, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = _data(await client.get("/feed", params=params, headers=reader.headers))
    return page


async def _published_in_feed(client: httpx.AsyncClient, reader: User) -> list[int]:
    """The articles of the reader's whole feed, newest first, read a page of one at a time."""
    seen: list[int] = []
    cursor = ""
    while True:
        page = await _feed(client, reader, cursor=cursor, limit=1)
        seen += [item["articleId"] for item in page["items"] if item["type"] == "article_published"]
        cursor = page["nextCursor"]
        if not cursor:
            return seen


async def test_feed_merges_pushed_and_pulled_articles_and_drops_withdrawn(
    client: httpx.AsyncClient,
) -> None:
    reader, other_fan = await _user(client, "reader"), await _user(client, "fan")
    ordinary, big = await _user(client, "ordinary"), await _user(client, "big")
    await _follow(client, reader, ordinary)
    for fan in (reader, other_fan):
        await _follow(client, fan, big)

    pushed = await _publish(client, ordinary, "普通作者的文章")
    pulled = await _publish(client, big, "大V的文章")

    async def both_shown() -> bool:
        return await _published_in_feed(client, reader) == [pulled, pushed]

    await eventually(both_shown, "both articles in the reader's feed", DEADLINE_S)
    first = (await _feed(client, reader, limit=20))["items"][0]
    assert first["actor"] == big.uid
    assert first["title"] == "大V的文章"

    _data(await client.post("/articles/withdraw", json={"id": pushed}, headers=ordinary.headers))

    async def withdrawn_gone() -> bool:
        return await _published_in_feed(client, reader) == [pulled]

    await eventually(withdrawn_gone, "the withdrawn article gone from the feed", DEADLINE_S)
    # The big author's other follower sees the pulled article too; nobody's feed has the
    # ordinary author's withdrawn one.
    assert await _published_in_feed(client, other_fan) == [pulled]


async def test_a_like_and_a_new_follower_reach_the_author_s_feed(
    client: httpx.AsyncClient,
) -> None:
    author, fan = await _user(client, "author"), await _user(client, "fan")
    article = await _publish(client, author, "被点赞的文章")
    await _follow(client, fan, author)
    _data(
        await client.post(
            "/articles/pub/like", json={"id": article, "like": True}, headers=fan.headers
        )
    )

    async def both_arrived() -> bool:
        items = (await _feed(client, author, limit=20))["items"]
        kinds = {(item["type"], item["actor"]) for item in items}
        return kinds == {("user_followed", fan.uid), ("article_liked", fan.uid)}

    await eventually(both_arrived, "the follow and the like in the author's feed", DEADLINE_S)
    items = (await _feed(client, author, limit=20))["items"]
    liked = next(item for item in items if item["type"] == "article_liked")
    assert liked["articleId"] == article
    assert liked["title"] == "被点赞的文章"
    assert liked["recipient"] == author.uid


async def test_a_cursor_the_feed_did_not_hand_out_is_code_4(client: httpx.AsyncClient) -> None:
    reader = await _user(client, "reader")
    answer = await client.get("/feed", params={"cursor": "not-a-cursor"}, headers=reader.headers)
    assert answer.status_code == 200
    assert answer.json()["code"] == 4, answer.json()
    assert (await client.get("/feed")).status_code == 401


async def test_authors_tag_their_own_articles_only(client: httpx.AsyncClient) -> None:
    author, stranger = await _user(client, "author"), await _user(client, "stranger")
    article = await _publish(client, author, "带标签的文章")
    tag = _data(await client.post("/tags/create", json={"name": "后端"}, headers=author.headers))
    tag_id = tag["tag"]["id"]
    assert tag["created"] is True
    assert [t["name"] for t in _data(await client.get("/tags/mine", headers=author.headers))] == [
        "后端"
    ]

    attach = {"biz": "article", "bizId": article, "tagIds": [tag_id]}
    tagged = _data(await client.post("/tags/attach", json=attach, headers=author.headers))
    assert [t["name"] for t in tagged["tags"]] == ["后端"]
    shown = _data(
        await client.get(
            "/tags/resource", params={"biz": "article", "bizId": article}, headers=author.headers
        )
    )
    assert [t["id"] for t in shown["tags"]] == [tag_id]
    under = _data(await client.get(f"/tags/{tag_id}/resources", headers=author.headers))
    assert [r["bizId"] for r in under["resources"]] == [article]

    # Someone else's article, even with a tag of one's own, is refused.
    own = _data(await client.post("/tags/create", json={"name": "x"}, headers=stranger.headers))
    refused = await client.post(
        "/tags/attach",
        json={"biz": "article", "bizId": article, "tagIds": [own["tag"]["id"]]},
        headers=stranger.headers,
    )
    assert refused.json()["code"] == 4, refused.json()
    still = _data(
        await client.get(
            "/tags/resource", params={"biz": "article", "bizId": article}, headers=author.headers
        )
    )
    assert [t["id"] for t in still["tags"]] == [tag_id]


async def test_an_article_is_found_by_its_tag(
    client: httpx.AsyncClient, search_process: ManagedProcess
) -> None:
    author = await _user(client, "author")
    article = await _publish(client, author, "一篇文章")
    name = f"zt{uuid.uuid4().hex[:12]}"  # a word no other test's text holds
    tag = _data(await client.post("/tags/create", json={"name": name}, headers=author.headers))
    attach = {"biz": "article", "bizId": article, "tagIds": [tag["tag"]["id"]]}
    _data(await client.post("/tags/attach", json=attach, headers=author.headers))

    async def found() -> bool:
        answer = (await client.get("/search/query", params={"q": name})).json()
        return answer["code"] == 0 and [
            (hit["type"], hit["id"]) for hit in answer["data"]["hits"]
        ] == [("article", article)]

    # Through the tag service's outbox, the broker and the search service's consumer.
    await eventually(found, "the article found by its tag", DEADLINE_S)
