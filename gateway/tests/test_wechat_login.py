"""WeChat scan login through the gateway, against the in-process WeChat emulator."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.infra import free_port
from devstack.wechat_emulator import DEV_APP_ID, WechatEmulator, open_id_for, union_id_for
from gateway.app import create_app
from gateway.auth.oauth_state import STATE_COOKIE, StateCookies
from gateway.settings import GatewaySettings
from gateway.tests.conftest import (
    RunningUserService,
    bearer,
    client_for,
    make_settings,
    wechat_transport,
)
from kit.logging import JsonFormatter

pytestmark = pytest.mark.integration

OK = {"code": 0, "msg": "OK", "data": None}
SYSTEM_ERROR = {"code": 5, "msg": "system error", "data": None}
BAD_STATE = {
    "code": 4,
    "msg": "WeChat login expired or was started elsewhere, please scan again",
    "data": None,
}
WECHAT_FAILED = {"code": 4, "msg": "WeChat login failed, please try again", "data": None}


def _logins(result: str) -> float:
    value = REGISTRY.get_sample_value("webook_login_total", {"method": "wechat", "result": result})
    return value or 0.0


async def _authorize_url(client: httpx.AsyncClient) -> str:
    resp = await client.get("/oauth2/wechat/authurl", headers={"Authorization": "Bearer null"})
    assert resp.status_code == 200
    body = resp.json()
    assert (body["code"], body["msg"]) == (0, "OK")
    url = body["data"]
    assert isinstance(url, str)
    return url


def _state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


async def _confirm(emulator: WechatEmulator, authorize_url: str, user: str = "alice") -> str:
    """Confirm at the emulator as ``user``; the callback URL it redirects to."""
    page_url = authorize_url.split("#", 1)[0]
    async with httpx.AsyncClient(transport=wechat_transport(emulator)) as browser:
        page = await browser.get(page_url)
        assert page.status_code == 200
        assert "Confirm login" in page.text
        confirm = await browser.get(f"{page_url}&{urlencode({'auto': '1', 'user': user})}")
    assert confirm.status_code == 302
    return confirm.headers["location"]


def _plant_cookie(client: httpx.AsyncClient, value: str) -> None:
    """Make ``value`` the client's only state cookie."""
    client.cookies.clear()
    client.cookies.set(STATE_COOKIE, value, domain="gateway.test", path="/oauth2/wechat")


async def _callback(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    # Browsers send whatever Authorization they stored; public routes ignore it.
    return await client.get(url, headers={"Authorization": "Bearer null"}, **kwargs)


async def test_authurl_sets_a_signed_cookie_with_the_same_state(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    resp = await client.get("/oauth2/wechat/authurl")

    url = resp.json()["data"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://wechat.test/connect/qrconnect"
    assert parts.fragment == "wechat_redirect"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["appid"] == DEV_APP_ID
    assert query["redirect_uri"] == "http://gateway.test/oauth2/wechat/callback"
    assert (query["response_type"], query["scope"]) == ("code", "snsapi_login")
    assert len(query["state"]) >= 32
    set_cookie = resp.headers["set-cookie"]
    cookie = SimpleCookie(set_cookie)[STATE_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/oauth2/wechat"
    assert cookie["max-age"] == "600"
    assert not cookie["secure"]  # test mode: plain HTTP
    # The cookie seals exactly this state (and no other).
    cookies: StateCookies = app.state.runtime.state_cookies
    cookies.check(cookie.value, query["state"])
    # Every call starts a new login.
    assert _state_of(await _authorize_url(client)) != query["state"]


async def test_cookie_is_secure_when_configured(
    redis_url: str, user_service: RunningUserService, redis_client: Any
) -> None:
    app = create_app(make_settings(redis_url, user_service.port, wechat_state_cookie_secure=True))
    async with app.router.lifespan_context(app), client_for(app) as client:
        resp = await client.get("/oauth2/wechat/authurl")

    assert SimpleCookie(resp.headers["set-cookie"])[STATE_COOKIE]["secure"] is True


async def test_login_creates_the_user_and_clears_the_state_cookie(
    client: httpx.AsyncClient, wechat: WechatEmulator, user_service: RunningUserService
) -> None:
    ok_before = _logins("ok")
    url = await _authorize_url(client)
    callback = await _confirm(wechat, url)
    assert callback.startswith("http://gateway.test/oauth2/wechat/callback?")
    assert parse_qs(urlsplit(callback).query)["state"] == [_state_of(url)]

    resp = await _callback(client, callback)

    assert resp.status_code == 200
    assert resp.json() == OK
    access = resp.headers["x-jwt-token"]
    assert resp.headers["x-refresh-token"]
    cleared = SimpleCookie(resp.headers["set-cookie"])[STATE_COOKIE]
    assert cleared.value == ""
    assert cleared["max-age"] == "0"
    assert STATE_COOKIE not in client.cookies
    [user] = user_service.servicer.users.values()
    assert user.wechat.open_id == open_id_for(DEV_APP_ID, "alice")
    assert user.wechat.union_id == union_id_for("alice")
    assert (await client.get("/users/profile", headers=bearer(access))).status_code == 200
    assert _logins("ok") - ok_before == 1


async def test_second_login_finds_the_same_user(
    client: httpx.AsyncClient, wechat: WechatEmulator, user_service: RunningUserService
) -> None:
    for _ in range(2):
        resp = await _callback(client, await _confirm(wechat, await _authorize_url(client)))
        assert resp.json() == OK
    await _callback(client, await _confirm(wechat, await _authorize_url(client), user="bob"))

    assert len(user_service.servicer.users) == 2


async def test_post_callback(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    callback = await _confirm(wechat, await _authorize_url(client))

    resp = await client.post(callback)

    assert resp.json() == OK
    assert resp.headers["x-jwt-token"]


async def test_replayed_code_is_refused(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    url = await _authorize_url(client)
    callback = await _confirm(wechat, url)
    cookie = client.cookies[STATE_COOKIE]
    assert (await _callback(client, callback)).json() == OK

    # An attacker who captured both the callback URL and the state cookie replays them.
    _plant_cookie(client, cookie)
    replay = await _callback(client, callback)

    assert replay.json() == WECHAT_FAILED
    assert "x-jwt-token" not in replay.headers


async def test_state_mismatch_is_refused(
    client: httpx.AsyncClient, app: FastAPI, wechat: WechatEmulator
) -> None:
    bad_state_before = _logins("bad_state")
    # The victim's browser holds the state cookie of a login it started...
    await _authorize_url(client)
    async with client_for(app) as attacker:
        # ...and is sent a callback carrying the attacker's code and state (login CSRF).
        attacker_callback = await _confirm(wechat, await _authorize_url(attacker), user="eve")

        resp = await _callback(client, attacker_callback)

        assert resp.status_code == 200
        assert resp.json() == BAD_STATE
        assert "x-jwt-token" not in resp.headers
        assert _logins("bad_state") - bad_state_before == 1
        # The state is checked before the code is exchanged: the code was not spent.
        assert (await _callback(attacker, attacker_callback)).json() == OK


async def test_missing_cookie_is_refused(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    callback = await _confirm(wechat, await _authorize_url(client))
    client.cookies.clear()

    resp = await _callback(client, callback)

    assert resp.json() == BAD_STATE


async def test_forged_cookie_is_refused(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    url = await _authorize_url(client)
    callback = await _confirm(wechat, url)
    forger = StateCookies(key="k" * 32, ttl=timedelta(minutes=10), secure=False)
    _plant_cookie(client, forger.seal(_state_of(url)))

    resp = await _callback(client, callback)

    assert resp.json() == BAD_STATE


@pytest.mark.parametrize("value", ["garbage", "", "a.b.c"])
async def test_malformed_cookie_is_refused(
    client: httpx.AsyncClient, wechat: WechatEmulator, value: str
) -> None:
    callback = await _confirm(wechat, await _authorize_url(client))
    _plant_cookie(client, value)

    resp = await _callback(client, callback)

    assert resp.json() == BAD_STATE


async def test_expired_cookie_is_refused(
    client: httpx.AsyncClient, wechat: WechatEmulator, settings: GatewaySettings
) -> None:
    url = await _authorize_url(client)
    callback = await _confirm(wechat, url)
    eleven_minutes_ago = StateCookies(
        key=settings.wechat_state_key.get_secret_value(),
        ttl=settings.wechat_state_ttl,
        secure=False,
        clock=lambda: time.time() - 660,
    )
    _plant_cookie(client, eleven_minutes_ago.seal(_state_of(url)))

    resp = await _callback(client, callback)

    assert resp.json() == BAD_STATE


async def test_missing_state_is_refused(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    callback = await _confirm(wechat, await _authorize_url(client))
    code = parse_qs(urlsplit(callback).query)["code"][0]

    resp = await _callback(client, "/oauth2/wechat/callback", params={"code": code})

    assert resp.json() == BAD_STATE


async def test_cancelled_login(client: httpx.AsyncClient, wechat: WechatEmulator) -> None:
    url = await _authorize_url(client)
    async with httpx.AsyncClient(transport=wechat_transport(wechat)) as browser:
        page = await browser.get(url.split("#", 1)[0])
        cancel_link = page.text.split('<a href="')[2].split('"')[0].replace("&amp;", "&")
        cancelled = await browser.get(f"http://wechat.test{cancel_link}")
    assert cancelled.status_code == 302

    resp = await _callback(client, cancelled.headers["location"])

    assert resp.json() == {"code": 4, "msg": "WeChat login was cancelled", "data": None}


async def test_unknown_code_is_refused(client: httpx.AsyncClient) -> None:
    refused_before = _logins("wechat_refused")
    state = _state_of(await _authorize_url(client))

    resp = await _callback(
        client, "/oauth2/wechat/callback", params={"code": "not-a-code", "state": state}
    )

    assert resp.json() == WECHAT_FAILED
    assert _logins("wechat_refused") - refused_before == 1


async def test_wrong_app_secret_is_a_system_error(
    redis_url: str, user_service: RunningUserService, redis_client: Any, wechat: WechatEmulator
) -> None:
    settings = make_settings(redis_url, user_service.port, wechat_app_secret="not-the-secret")
    app = create_app(settings, wechat_transport=wechat_transport(wechat))
    async with app.router.lifespan_context(app), client_for(app) as client:
        callback = await _confirm(wechat, await _authorize_url(client))
        resp = await _callback(client, callback)

    assert resp.json() == SYSTEM_ERROR


@pytest.fixture
async def unreachable_wechat(
    redis_url: str, user_service: RunningUserService, redis_client: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose WeChat API base is a port nothing listens on."""
    settings = make_settings(
        redis_url, user_service.port, wechat_api_base=f"http://127.0.0.1:{free_port()}"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


async def test_wechat_unreachable_is_a_system_error(
    unreachable_wechat: httpx.AsyncClient,
) -> None:
    errors_before = _logins("error")
    state = _state_of(await _authorize_url(unreachable_wechat))

    resp = await _callback(
        unreachable_wechat, "/oauth2/wechat/callback", params={"code": "c0de", "state": state}
    )

    assert resp.status_code == 200
    assert resp.json() == SYSTEM_ERROR
    # The state was used up whatever the outcome.
    assert STATE_COOKIE not in unreachable_wechat.cookies
    assert _logins("error") - errors_before == 1


async def test_user_service_down_is_a_system_error(
    client: httpx.AsyncClient, wechat: WechatEmulator, user_service: RunningUserService
) -> None:
    callback = await _confirm(wechat, await _authorize_url(client))
    await user_service.server.stop(None)

    resp = await _callback(client, callback)

    assert resp.json() == SYSTEM_ERROR
    assert "x-jwt-token" not in resp.headers


async def test_overlong_state_is_bad_input(client: httpx.AsyncClient) -> None:
    resp = await _callback(
        client, "/oauth2/wechat/callback", params={"code": "c", "state": "s" * 129}
    )

    assert resp.json() == {
        "code": 4,
        "msg": "state is too long (at most 128 characters)",
        "data": None,
    }


async def test_callback_with_cors(client: httpx.AsyncClient) -> None:
    resp = await client.get("/oauth2/wechat/authurl", headers={"Origin": "http://localhost:3000"})

    assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert resp.headers["access-control-allow-credentials"] == "true"


async def test_codes_states_and_tokens_are_never_logged(
    client: httpx.AsyncClient, wechat: WechatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = await _authorize_url(client)
    callback = await _confirm(wechat, url)
    query = parse_qs(urlsplit(callback).query)
    cookie = client.cookies[STATE_COOKIE]
    ok = await _callback(client, callback)
    assert ok.json() == OK
    _plant_cookie(client, cookie)
    assert (await _callback(client, callback)).json() == WECHAT_FAILED  # replay

    formatter = JsonFormatter("gateway")
    lines = [formatter.format(record) for record in caplog.records]
    assert any('"method": "wechat"' in line for line in lines)
    sensitive = [
        query["code"][0],
        query["state"][0],
        cookie,
        ok.headers["x-jwt-token"],
        "dev-insecure-wechat-app-secret",
    ]
    for line in lines:
        for value in sensitive:
            assert value not in line
