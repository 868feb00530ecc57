"""The edge's input rules end to end: the real gateway in front of the real services.

Lax values (``true``/``"7"``/``7.0`` as ids, ``"off"`` as a boolean), lone surrogates and
bodies that are not UTF-8 answer code 4 with a message for people, never a codec's text nor
a 500; the front end's own requests keep working.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

import httpx
import pytest

pytestmark = pytest.mark.e2e

PASSWORD: Final = "hello#world123"
JSON: Final = {"Content-Type": "application/json"}


async def _post(client: httpx.AsyncClient, path: str, body: Any, **kwargs: Any) -> Any:
    """POST ``body`` as ASCII JSON (a lone surrogate as its ``\\u`` escape); the envelope."""
    content = json.dumps(body).encode("ascii")
    answer = await client.post(path, content=content, headers={**JSON, **kwargs})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _logged_in(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"strict-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    assert (await _post(client, "/users/signup", body))["code"] == 0
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    assert login.json()["code"] == 0
    return {"Authorization": f"Bearer {login.headers['x-jwt-token']}"}


async def test_a_lone_surrogate_in_a_password_is_bad_input(client: httpx.AsyncClient) -> None:
    email = f"surrogate-{uuid.uuid4().hex[:10]}@example.com"
    password = "pass#1word\ud800"
    body = {"email": email, "password": password, "confirmPassword": password}
    answer = await _post(client, "/users/signup", body)
    assert answer["code"] == 4
    assert answer["msg"].startswith("password is not valid text: it contains a lone surrogate")
    assert "codec" not in answer["msg"]
    login = await _post(client, "/users/login", {"email": email, "password": password})
    assert (login["code"], login["msg"].split(" is ")[0]) == (4, "password")


async def test_lax_values_are_bad_input_and_strict_ones_work(client: httpx.AsyncClient) -> None:
    author = await _logged_in(client)
    saved = await _post(client, "/articles/publish", {"title": "严格", "content": "c"}, **author)
    assert saved["code"] == 0
    aid = saved["data"]
    for lax in (True, str(aid), f" {aid} ", float(aid)):
        answer = await _post(client, "/articles/pub/like", {"id": lax, "like": True}, **author)
        assert (answer["code"], answer["msg"]) == (4, "id must be an integer")
    answer = await _post(client, "/articles/pub/like", {"id": aid, "like": "off"}, **author)
    assert (answer["code"], answer["msg"]) == (4, "like must be a boolean")
    assert (await _post(client, "/articles/pub/like", {"id": aid, "like": True}, **author))[
        "code"
    ] == 0
    for path in (f"/articles/pub/%20{aid}", f"/articles/pub/{aid}.0"):
        read = await client.get(path, headers=author)
        assert read.json() == {"code": 4, "msg": "id must be an integer", "data": None}
    read = await client.get(f"/articles/pub/{aid}", headers=author)
    assert read.json()["data"]["likeCnt"] >= 0


async def test_a_body_that_is_not_utf8_is_bad_input(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/users/login", content=b'{"email": "a@example.com", "password": "\xff"}', headers=JSON
    )
    assert answer.status_code == 200
    assert answer.json() == {"code": 4, "msg": "malformed request body", "data": None}
