"""Likes, collects and comments only on what exists, through the gateway on the real stack.

A like on an article that does not exist, a comment on a draft or on an unknown ``biz``
answer code 4 with a clear message; on a published article both work (code 0). Every hop
runs over mutual TLS, so this also proves the interactive and comment services may call
``ArticleService.PublishedExists`` (their declared callers).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "hello#world123"
MISSING_ARTICLE = 999_999


async def _user(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"probe-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    assert (await client.post("/users/signup", json=body)).json()["code"] == 0
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.headers['x-jwt-token']}"}


async def _write(client: httpx.AsyncClient, author: dict[str, str], route: str) -> int:
    answer = (
        await client.post(route, json={"title": "t", "content": "<p>c</p>"}, headers=author)
    ).json()
    assert answer["code"] == 0, answer
    return int(answer["data"])


async def _comment(
    client: httpx.AsyncClient, who: dict[str, str], biz_id: int, biz: str = "article"
) -> dict[str, Any]:
    answer = await client.post(
        "/comments/create",
        json={"biz": biz, "bizId": biz_id, "content": "hello"},
        headers=who,
    )
    assert answer.status_code == 200
    return dict(answer.json())


async def _like(
    client: httpx.AsyncClient, who: dict[str, str], article_id: int, like: bool = True
) -> dict[str, Any]:
    answer = await client.post(
        "/articles/pub/like", json={"id": article_id, "like": like}, headers=who
    )
    assert answer.status_code == 200
    return dict(answer.json())


async def test_a_like_on_a_missing_article_is_refused(client: httpx.AsyncClient) -> None:
    reader = await _user(client)
    answer = await _like(client, reader, MISSING_ARTICLE)
    assert answer["code"] == 4
    assert "not published" in answer["msg"]
    collect = await client.post(
        "/articles/pub/collect", json={"id": MISSING_ARTICLE, "cid": 0}, headers=reader
    )
    assert collect.json()["code"] == 4


async def test_comments_on_a_draft_or_an_unknown_biz_are_refused(
    client: httpx.AsyncClient,
) -> None:
    author, reader = await _user(client), await _user(client)
    draft = await _write(client, author, "/articles/edit")
    on_draft = await _comment(client, reader, draft)
    assert on_draft["code"] == 4
    assert "not published" in on_draft["msg"]
    unknown = await _comment(client, reader, 1, biz="nonexistent_biz")
    assert unknown["code"] == 4
    assert "unknown biz" in unknown["msg"]
    counts = (await client.get("/comments/count", params={"bizIds": [draft]})).json()
    assert counts["data"][0]["count"] == 0


async def test_a_published_article_takes_likes_and_comments_and_a_withdrawn_one_unlikes(
    client: httpx.AsyncClient,
) -> None:
    author, reader = await _user(client), await _user(client)
    article_id = await _write(client, author, "/articles/publish")
    assert (await _like(client, reader, article_id))["code"] == 0
    assert (await _comment(client, reader, article_id))["code"] == 0

    withdrawn = await client.post("/articles/withdraw", json={"id": article_id}, headers=author)
    assert withdrawn.json()["code"] == 0
    # Taking a like back needs no existing article.
    assert (await _like(client, reader, article_id, like=False))["code"] == 0

    # An article withdrawn before anyone interacted with it takes nothing.
    gone = await _write(client, author, "/articles/publish")
    assert (await client.post("/articles/withdraw", json={"id": gone}, headers=author)).json()[
        "code"
    ] == 0
    assert (await _comment(client, reader, gone))["code"] == 4
    assert (await _like(client, reader, gone))["code"] == 4
