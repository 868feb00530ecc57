"""Articles end to end: gateway → article and interactive services → SQL, Redis and Kafka.

Write, save, publish, read as another user (the read is counted through Kafka), like,
collect, list, withdraw; refusals for another user's article; sanitised content.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "hello#world123"


async def _user(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"writer-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    assert (await client.post("/users/signup", json=body)).json()["code"] == 0
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.headers['x-jwt-token']}"}


async def test_write_publish_read_like_collect_withdraw(client: httpx.AsyncClient) -> None:
    author, reader = await _user(client), await _user(client)
    draft = {"title": "微服务 and 限流算法", "content": "<p>Token <b>bucket</b></p>"}
    aid = (await client.post("/articles/edit", json=draft, headers=author)).json()["data"]
    assert isinstance(aid, int)
    assert aid > 0
    # A draft is invisible to readers.
    hidden = (await client.get(f"/articles/pub/{aid}", headers=reader)).json()
    assert hidden["code"] == 4

    published = await client.post(
        "/articles/publish", json={**draft, "id": aid, "title": "限流算法"}, headers=author
    )
    assert published.json() == {"code": 0, "msg": "OK", "data": aid}

    for _ in range(3):
        read = (await client.get(f"/articles/pub/{aid}", headers=reader)).json()
        assert read["code"] == 0, read
    article = read["data"]
    assert article["title"] == "限流算法"
    assert "<b>bucket</b>" in article["content"]

    like = await client.post("/articles/pub/like", json={"id": aid, "like": True}, headers=reader)
    assert like.json()["code"] == 0
    again = await client.post("/articles/pub/like", json={"id": aid, "like": True}, headers=reader)
    assert again.json()["code"] == 0
    collect = await client.post("/articles/pub/collect", json={"id": aid, "cid": 0}, headers=reader)
    assert collect.json()["code"] == 0

    # Reads arrive through Kafka in batches: wait for the three (and this one) to count.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        view = (await client.get(f"/articles/pub/{aid}", headers=reader)).json()["data"]
        if view["readCnt"] >= 4 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert view["readCnt"] >= 4
    assert (view["likeCnt"], view["liked"], view["collectCnt"], view["collected"]) == (
        1,
        True,
        1,
        True,
    )

    listed = await client.post("/articles/list", json={"offset": 0, "limit": 10}, headers=author)
    items = listed.json()["data"]
    assert [(i["id"], i["status"]) for i in items] == [(aid, 2)]

    withdrawn = await client.post("/articles/withdraw", json={"id": aid}, headers=author)
    assert withdrawn.json()["code"] == 0
    gone = (await client.get(f"/articles/pub/{aid}", headers=reader)).json()
    assert gone["code"] == 4
    assert gone["data"] is None
    own = (await client.get(f"/articles/detail/{aid}", headers=author)).json()["data"]
    assert own["status"] == 3


async def test_another_users_article_is_refused(client: httpx.AsyncClient) -> None:
    author, other = await _user(client), await _user(client)
    aid = (
        await client.post("/articles/edit", json={"title": "mine", "content": "x"}, headers=author)
    ).json()["data"]
    attempts = [
        await client.get(f"/articles/detail/{aid}", headers=other),
        await client.post(
            "/articles/edit", json={"id": aid, "title": "stolen", "content": "y"}, headers=other
        ),
        await client.post(
            "/articles/publish", json={"id": aid, "title": "stolen", "content": "y"}, headers=other
        ),
        await client.post("/articles/withdraw", json={"id": aid}, headers=other),
    ]
    for answer in attempts:
        assert answer.status_code == 200
        assert answer.json()["code"] == 4
    still = (await client.get(f"/articles/detail/{aid}", headers=author)).json()["data"]
    assert still["title"] == "mine"


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script><p>text</p>",
        '<img src="x" onerror="alert(1)"><p>text</p>',
        '<a href="javascript:alert(1)">link</a><p>text</p>',
        '<p onclick="steal()">text</p><iframe src="//evil"></iframe>',
    ],
)
async def test_dangerous_html_never_comes_back(client: httpx.AsyncClient, payload: str) -> None:
    author, reader = await _user(client), await _user(client)
    aid = (
        await client.post(
            "/articles/publish", json={"title": "t", "content": payload}, headers=author
        )
    ).json()["data"]
    answers = [
        (await client.get(f"/articles/pub/{aid}", headers=reader)).text,
        (await client.get(f"/articles/detail/{aid}", headers=author)).text,
        (await client.post("/articles/list", json={"offset": 0, "limit": 5}, headers=author)).text,
    ]
    for text in answers:
        lowered = text.lower()
        for needle in ("<script", "onerror", "javascript:", "onclick", "<iframe"):
            assert needle not in lowered, text
        assert "text" in text
