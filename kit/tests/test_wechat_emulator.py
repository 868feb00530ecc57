"""The WeChat OAuth emulator behaves like WeChat where the gateway depends on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from devstack.wechat_emulator import (
    DEV_APP_ID,
    DEV_APP_SECRET,
    WechatEmulator,
    open_id_for,
    union_id_for,
)

CALLBACK = "http://127.0.0.1:8080/oauth2/wechat/callback"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def emulator(clock: _Clock) -> WechatEmulator:
    return WechatEmulator(apps={DEV_APP_ID: DEV_APP_SECRET, "wx-other": "other"}, clock=clock)


@pytest.fixture
async def http(emulator: WechatEmulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=emulator.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://wechat.test") as client:
        yield client


def _authorize_query(**overrides: str) -> str:
    params = {
        "appid": DEV_APP_ID,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "snsapi_login",
        "state": "st4te",
        **overrides,
    }
    return urlencode(params)


async def _code(http: httpx.AsyncClient, user: str = "alice", **overrides: str) -> str:
    resp = await http.get(f"/connect/qrconnect/confirm?{_authorize_query(**overrides)}&user={user}")
    assert resp.status_code == 302
    return parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]


async def _exchange(http: httpx.AsyncClient, code: str = "", **overrides: str) -> dict[str, Any]:
    params = {
        "appid": DEV_APP_ID,
        "secret": DEV_APP_SECRET,
        "code": code,
        "grant_type": "authorization_code",
        **overrides,
    }
    resp = await http.get("/sns/oauth2/access_token", params=params)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    body: dict[str, Any] = resp.json()
    return body


async def test_authorize_page_offers_a_test_user(http: httpx.AsyncClient) -> None:
    resp = await http.get(f"/connect/qrconnect?{_authorize_query(state='<b>')}")

    assert resp.status_code == 200
    assert 'name="user" value="alice"' in resp.text
    assert "Confirm login" in resp.text
    assert "<b>" not in resp.text  # reflected values are escaped
    assert "&lt;b&gt;" in resp.text


async def test_auto_confirm_redirects_with_code_and_state(http: httpx.AsyncClient) -> None:
    resp = await http.get(f"/connect/qrconnect?{_authorize_query()}&auto=1")

    assert resp.status_code == 302
    location = urlsplit(resp.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"]
    assert len(query["code"][0]) == 32


async def test_redirect_keeps_the_callback_query(http: httpx.AsyncClient) -> None:
    code_url = await http.get(
        f"/connect/qrconnect/confirm?{_authorize_query(redirect_uri=CALLBACK + '?next=/a')}"
    )

    query = parse_qs(urlsplit(code_url.headers["location"]).query)
    assert query["next"] == ["/a"]
    assert "code" in query


async def test_code_exchange_gives_stable_ids(http: httpx.AsyncClient) -> None:
    alice = await _exchange(http, await _code(http))
    alice_again = await _exchange(http, await _code(http))
    bob = await _exchange(http, await _code(http, user="bob"))
    alice_elsewhere = await _exchange(
        http, await _code(http, appid="wx-other"), appid="wx-other", secret="other"
    )

    assert alice["openid"] == alice_again["openid"] == open_id_for(DEV_APP_ID, "alice")
    assert alice["unionid"] == union_id_for("alice")
    assert len(alice["openid"]) == 28
    assert bob["openid"] != alice["openid"]
    # openid is per app, unionid per person.
    assert alice_elsewhere["openid"] != alice["openid"]
    assert alice_elsewhere["unionid"] == alice["unionid"]
    assert set(alice) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "openid",
        "scope",
        "unionid",
    }
    assert alice["scope"] == "snsapi_login"


async def test_codes_are_single_use(http: httpx.AsyncClient) -> None:
    code = await _code(http)
    assert "openid" in await _exchange(http, code)

    assert await _exchange(http, code) == {"errcode": 40163, "errmsg": "code been used"}


async def test_codes_expire_after_five_minutes(http: httpx.AsyncClient, clock: _Clock) -> None:
    fresh, stale = await _code(http), await _code(http)
    clock.now += 299
    assert "openid" in await _exchange(http, fresh)

    clock.now += 1

    assert await _exchange(http, stale) == {"errcode": 40029, "errmsg": "invalid code"}


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wx-unknown"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"grant_type": "client_credential"}, 40002),
        ({"code": ""}, 41008),
        ({"code": "made-up"}, 40029),
        ({"appid": "wx-other", "secret": "other"}, 40029),  # another app's code
    ],
)
async def test_exchange_errors(
    http: httpx.AsyncClient, overrides: dict[str, str], errcode: int
) -> None:
    params = {"code": await _code(http), **overrides}

    body = await _exchange(http, **params)

    assert body["errcode"] == errcode
    assert "openid" not in body


@pytest.mark.parametrize(
    "overrides",
    [
        {"appid": "wx-unknown"},
        {"redirect_uri": "javascript:alert(1)"},
        {"response_type": "token"},
        {"scope": "snsapi_userinfo"},
    ],
)
async def test_bad_authorize_requests_get_an_error_page(
    http: httpx.AsyncClient, overrides: dict[str, str]
) -> None:
    for path in ("/connect/qrconnect", "/connect/qrconnect/confirm"):
        resp = await http.get(f"{path}?{_authorize_query(**overrides)}")
        assert resp.status_code == 400


async def test_registered_callback_hosts(clock: _Clock) -> None:
    emulator = WechatEmulator(redirect_hosts={"127.0.0.1:8080"}, clock=clock)
    transport = httpx.ASGITransport(app=emulator.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://wechat.test") as http:
        allowed = await http.get(f"/connect/qrconnect/confirm?{_authorize_query()}")
        elsewhere = await http.get(
            "/connect/qrconnect/confirm?"
            + _authorize_query(redirect_uri="http://evil.example/oauth2/wechat/callback")
        )

    assert allowed.status_code == 302
    assert elsewhere.status_code == 400


async def test_bad_test_user_name(http: httpx.AsyncClient) -> None:
    resp = await http.get(f"/connect/qrconnect/confirm?{_authorize_query()}&user=a%20b")

    assert resp.status_code == 400


async def test_cancel_redirects_without_code(http: httpx.AsyncClient) -> None:
    resp = await http.get(f"/connect/qrconnect/cancel?{_authorize_query()}")

    assert resp.status_code == 302
    assert parse_qs(urlsplit(resp.headers["location"]).query) == {"state": ["st4te"]}


async def test_healthz(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
