"""Profile (bare object) and edit (validated, then passed to the service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.tests.conftest import LoginTokens, RunningUserService, bearer

pytestmark = pytest.mark.integration


def _edit_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"nickname": "Alice", "birthday": "1990-05-17", "aboutMe": "hi"}
    body.update(overrides)
    return body


_MARKUP_NICKNAME = "nickname must be plain text, without HTML tags or character references"
_MARKUP_ABOUT_ME = "aboutMe must be plain text, without HTML tags or character references"


def _utc_today_plus(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


async def test_profile_is_a_bare_capitalised_object(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    resp = await client.get("/users/profile", headers=bearer(tokens.access))

    assert resp.status_code == 200
    assert resp.json() == {
        "Email": "alice@example.com",
        "Phone": "",
        "Nickname": "",
        "Birthday": "",
        "AboutMe": "",
    }


async def test_edit_then_profile(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    resp = await client.post("/users/edit", json=_edit_body(), headers=bearer(tokens.access))
    assert resp.json() == {"code": 0, "msg": "OK", "data": None}

    profile = (await client.get("/users/profile", headers=bearer(tokens.access))).json()

    assert profile["Nickname"] == "Alice"
    assert profile["Birthday"] == "1990-05-17"
    assert profile["AboutMe"] == "hi"


@pytest.mark.parametrize("days", [0, 1], ids=["today", "tomorrow-utc"])
async def test_birthday_up_to_one_day_ahead_is_accepted(
    client: httpx.AsyncClient, tokens: LoginTokens, days: int
) -> None:
    body = _edit_body(birthday=_utc_today_plus(days))

    resp = await client.post("/users/edit", json=body, headers=bearer(tokens.access))

    assert resp.json()["code"] == 0


async def test_empty_birthday_is_unset(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    resp = await client.post(
        "/users/edit", json=_edit_body(birthday=""), headers=bearer(tokens.access)
    )

    assert resp.json()["code"] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"nickname": "n" * 65}, "nickname is too long (at most 64 characters)", id="nickname"
        ),
        pytest.param(
            {"aboutMe": "a" * 1025}, "aboutMe is too long (at most 1024 characters)", id="about"
        ),
        pytest.param(
            {"birthday": "1990/05/17"},
            "birthday must be a date in YYYY-MM-DD format",
            id="birthday-format",
        ),
        pytest.param(
            {"birthday": "2021-02-30"}, "birthday is not a real calendar date", id="birthday-fake"
        ),
        pytest.param(
            # Well past tomorrow: the parameters are computed when the tests are collected,
            # which may be on the day before a run that crosses midnight.
            {"birthday": _utc_today_plus(30)},
            "birthday cannot be in the future",
            id="birthday-future",
        ),
        pytest.param({"nickname": 7}, "nickname must be a string", id="wrong-type"),
        pytest.param({"nickname": "<b>Al</b>"}, _MARKUP_NICKNAME, id="nickname-tag"),
        pytest.param({"nickname": "Al&#60;"}, _MARKUP_NICKNAME, id="nickname-reference"),
        pytest.param(
            {"aboutMe": "hi <script>alert(1)</script>"}, _MARKUP_ABOUT_ME, id="about-script"
        ),
        pytest.param({"aboutMe": "<!-- x -->"}, _MARKUP_ABOUT_ME, id="about-comment"),
        pytest.param({"aboutMe": "&lt;img&gt;"}, _MARKUP_ABOUT_ME, id="about-reference"),
    ],
)
async def test_edit_validation(
    client: httpx.AsyncClient, tokens: LoginTokens, overrides: dict[str, Any], message: str
) -> None:
    resp = await client.post(
        "/users/edit", json=_edit_body(**overrides), headers=bearer(tokens.access)
    )

    assert resp.status_code == 200
    assert resp.json() == {"code": 4, "msg": message, "data": None}


async def test_markup_is_refused_before_the_service_is_called(
    client: httpx.AsyncClient, tokens: LoginTokens, user_service: RunningUserService
) -> None:
    before = list(user_service.servicer.users.values())

    resp = await client.post(
        "/users/edit",
        json=_edit_body(nickname="<img src=x onerror=alert(1)>"),
        headers=bearer(tokens.access),
    )

    assert resp.json() == {"code": 4, "msg": _MARKUP_NICKNAME, "data": None}
    assert list(user_service.servicer.users.values()) == before


async def test_text_that_only_looks_like_markup_is_accepted(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    body = _edit_body(nickname="a < b & c", aboutMe="I <3 Tom & Jerry; 1<2")

    resp = await client.post("/users/edit", json=body, headers=bearer(tokens.access))

    assert resp.json()["code"] == 0
    profile = (await client.get("/users/profile", headers=bearer(tokens.access))).json()
    assert (profile["Nickname"], profile["AboutMe"]) == ("a < b & c", "I <3 Tom & Jerry; 1<2")


async def test_service_invalid_argument_message_is_passed_on(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    resp = await client.post(
        "/users/edit", json=_edit_body(nickname="admin"), headers=bearer(tokens.access)
    )

    assert resp.json() == {"code": 4, "msg": "nickname is reserved", "data": None}
