"""SMS code login and WeChat scan login, end to end over real processes.

HTTP → gateway → CodeService (sms service, local provider writing to the run dir's
``sms.log``) and UserService (SQLite), both found through etcd; WeChat through the local
OAuth emulator. The tests read codes from the log file and follow the emulator's redirect
by hand, as a person using curl would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import USER_AGENT, RunningStack

pytestmark = pytest.mark.e2e

OK = {"code": 0, "msg": "OK", "data": None}
STATE_COOKIE = "webook_wechat_state"


def _phone() -> str:
    return "139" + "".join(str(secrets.randbelow(10)) for _ in range(8))


def _codes_sent(stack: RunningStack, phone: str) -> list[str]:
    if not stack.sms_log.exists():
        return []
    codes = []
    for line in stack.sms_log.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        # Numbers are kept in E.164 form (+86 for mainland ones), whatever the spelling sent.
        if message["numbers"] == [f"+86{phone}"] and message["tpl_id"] == "login_code":
            codes.append(message["args"][0])
    return codes


async def _new_code(stack: RunningStack, phone: str, already: int) -> str:
    """The code written after the first ``already`` ones for ``phone``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        codes = _codes_sent(stack, phone)
        if len(codes) > already:
            return codes[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no new code in {stack.sms_log}")


async def _send_code(client: httpx.AsyncClient, phone: str) -> None:
    """Ask for a code, waiting out the (shortened) resend interval if need be."""
    deadline = time.monotonic() + 10
    while True:
        answer = (await client.post("/users/login_sms/code/send", json={"phone": phone})).json()
        if answer == OK:
            return
        assert answer["msg"] == "code sent too often, try again later", answer
        assert time.monotonic() < deadline, "the resend interval never ended"
        await asyncio.sleep(0.1)


async def _sms_login(client: httpx.AsyncClient, stack: RunningStack, phone: str) -> str:
    """Send a code, read it from the SMS log, log in; the access token."""
    already = len(_codes_sent(stack, phone))
    await _send_code(client, phone)
    code = await _new_code(stack, phone, already)
    assert len(code) == 6
    assert code.isdigit()
    login = await client.post("/users/login_sms", json={"phone": phone, "code": code})
    assert login.status_code == 200
    assert login.json() == OK
    assert login.headers["x-refresh-token"]
    return login.headers["x-jwt-token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _profile(client: httpx.AsyncClient, access: str) -> dict[str, str]:
    resp = await client.get("/users/profile", headers=_bearer(access))
    assert resp.status_code == 200
    body: dict[str, str] = resp.json()
    return body


async def test_sms_login_creates_the_user_then_finds_it(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    phone = _phone()

    first = await _sms_login(client, stack, phone)

    assert (await _profile(client, first))["Phone"] == f"+86{phone}"
    edit = await client.post(
        "/users/edit",
        headers=_bearer(first),
        json={"nickname": "短信用户", "birthday": "", "aboutMe": ""},
    )
    assert edit.json() == OK

    second = await _sms_login(client, stack, phone)

    assert second != first
    again = await _profile(client, second)
    assert (again["Phone"], again["Nickname"]) == (f"+86{phone}", "短信用户")


async def test_sms_wrong_code(client: httpx.AsyncClient, stack: RunningStack) -> None:
    phone = _phone()
    await _send_code(client, phone)
    code = await _new_code(stack, phone, 0)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    resp = await client.post("/users/login_sms", json={"phone": phone, "code": wrong})

    assert resp.json() == {"code": 4, "msg": "wrong or expired code", "data": None}
    assert "x-jwt-token" not in resp.headers


async def _start_wechat_login(client: httpx.AsyncClient, stack: RunningStack) -> str:
    """``GET /oauth2/wechat/authurl``; the authorize URL (its cookie stays in ``client``)."""
    resp = await client.get("/oauth2/wechat/authurl", headers={"Authorization": "Bearer null"})
    body = resp.json()
    assert (body["code"], body["msg"]) == (0, "OK")
    url: str = body["data"]
    assert url.startswith(f"{stack.wechat_base}/connect/qrconnect?")
    assert url.endswith("#wechat_redirect")
    assert STATE_COOKIE in client.cookies
    return url


async def _confirm_at_wechat(authorize_url: str, user: str) -> str:
    """Confirm as ``user`` at the emulator; the callback URL it redirects the browser to."""
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(authorize_url.split("#", 1)[0])
        assert page.status_code == 200
        assert "Confirm login" in page.text
        confirmed = await browser.get(f"{authorize_url.split('#', 1)[0]}&auto=1&user={user}")
    assert confirmed.status_code == 302
    return confirmed.headers["location"]


async def test_wechat_login_end_to_end(client: httpx.AsyncClient, stack: RunningStack) -> None:
    user = f"e2e{secrets.token_hex(4)}"
    url = await _start_wechat_login(client, stack)
    callback = await _confirm_at_wechat(url, user)
    assert callback.startswith(f"{stack.base_url}/oauth2/wechat/callback?")
    sent_state = parse_qs(urlsplit(url).query)["state"]
    assert parse_qs(urlsplit(callback).query)["state"] == sent_state

    resp = await client.get(callback, headers={"Authorization": "Bearer null"})

    assert resp.status_code == 200
    assert resp.json() == OK
    access = resp.headers["x-jwt-token"]
    assert resp.headers["x-refresh-token"]
    assert STATE_COOKIE not in client.cookies  # cleared after use
    profile = await _profile(client, access)
    assert (profile["Email"], profile["Phone"]) == ("", "")
    edit = await client.post(
        "/users/edit",
        headers=_bearer(access),
        json={"nickname": user, "birthday": "", "aboutMe": ""},
    )
    assert edit.json() == OK

    # The same WeChat user again: the same account.
    again = await client.get(
        await _confirm_at_wechat(await _start_wechat_login(client, stack), user)
    )
    assert again.json() == OK
    assert (await _profile(client, again.headers["x-jwt-token"]))["Nickname"] == user


async def test_replayed_wechat_code_is_refused(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    callback = await _confirm_at_wechat(await _start_wechat_login(client, stack), "replayer")
    state_cookie = client.cookies[STATE_COOKIE]
    assert (await client.get(callback)).json() == OK

    # Both the code and the browser's state cookie captured and replayed.
    client.cookies.set(STATE_COOKIE, state_cookie, domain="127.0.0.1", path="/oauth2/wechat")
    replay = await client.get(callback)

    assert replay.json() == {
        "code": 4,
        "msg": "WeChat login failed, please try again",
        "data": None,
    }
    assert "x-jwt-token" not in replay.headers


async def test_wechat_state_mismatch_is_refused(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    await _start_wechat_login(client, stack)  # the victim's own login attempt
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as attacker:
        attacker_callback = await _confirm_at_wechat(
            await _start_wechat_login(attacker, stack), "attacker"
        )

        # The attacker makes the victim's browser open the attacker's callback.
        forced = await client.get(attacker_callback)

        assert forced.json() == {
            "code": 4,
            "msg": "WeChat login expired or was started elsewhere, please scan again",
            "data": None,
        }
        assert "x-jwt-token" not in forced.headers
        # The attacker's code was not spent on the refused attempt.
        assert (await attacker.get(attacker_callback)).json() == OK
