"""SMS code login through the gateway: sending, verifying, find-or-create, errors, metrics."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.tests.conftest import (
    RunningCodeService,
    RunningUserService,
    bearer,
)
from kit.logging import JsonFormatter

pytestmark = pytest.mark.integration

PHONE = "13812345678"
# What the gateway passes on: every spelling of PHONE, normalised at the edge.
E164 = "+8613812345678"
NOT_VALID = (
    "invalid phone number: not a valid phone number (write it with its country code, "
    "e.g. +8613812345678)"
)
BAD_CHARACTERS = (
    "invalid phone number: phone number may contain only digits, spaces, '-', '.', "
    "parentheses and a leading '+'"
)
OK = {"code": 0, "msg": "OK", "data": None}
SYSTEM_ERROR = {"code": 5, "msg": "system error", "data": None}


def _bad_input(msg: str) -> dict[str, Any]:
    return {"code": 4, "msg": msg, "data": None}


def _logins(method: str, result: str) -> float:
    value = REGISTRY.get_sample_value("webook_login_total", {"method": method, "result": result})
    return value or 0.0


async def _send(client: httpx.AsyncClient, phone: str = PHONE, **kwargs: Any) -> httpx.Response:
    return await client.post("/users/login_sms/code/send", json={"phone": phone}, **kwargs)


async def _login(client: httpx.AsyncClient, code: str, phone: str = PHONE) -> httpx.Response:
    return await client.post("/users/login_sms", json={"phone": phone, "code": code})


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_send_code(client: httpx.AsyncClient, code_service: RunningCodeService) -> None:
    resp = await _send(client, headers={"Authorization": "Bearer null"})

    assert resp.status_code == 200
    assert resp.json() == OK
    [call] = code_service.servicer.send_calls
    assert (call.biz, call.phone) == ("login", E164)


@pytest.mark.parametrize(
    "phone", [f"  {PHONE} ", "+86 138 1234 5678", "138-1234-5678", E164, "0086 13812345678"]
)
async def test_phone_is_normalised_to_e164(
    client: httpx.AsyncClient, code_service: RunningCodeService, phone: str
) -> None:
    resp = await _send(client, phone=phone)

    assert resp.json() == OK
    assert code_service.servicer.send_calls[0].phone == E164


async def test_two_forms_of_one_number_are_one_phone(
    client: httpx.AsyncClient,
    code_service: RunningCodeService,
    user_service: RunningUserService,
) -> None:
    assert (await _send(client, phone=PHONE)).json() == OK
    # The other form is the same phone: same resend interval...
    again = await _send(client, phone=E164)
    assert again.json() == _bad_input("code sent too often, try again later")
    # ...and the code sent to one form logs in with the other, into one account.
    code = code_service.servicer.sent[("login", E164)]
    assert (await _login(client, code, phone=E164)).json() == OK
    code_service.servicer.allow_resend("login", E164)
    assert (await _send(client, phone=E164)).json() == OK
    assert (await _login(client, code_service.servicer.sent[("login", E164)])).json() == OK
    [user] = user_service.servicer.users.values()
    assert user.phone == E164


async def test_send_too_often(client: httpx.AsyncClient) -> None:
    assert (await _send(client)).json() == OK

    resp = await _send(client)

    assert resp.status_code == 200
    assert resp.json() == _bad_input("code sent too often, try again later")


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({"phone": "12345"}, NOT_VALID),
        ({"phone": "23812345678"}, NOT_VALID),
        ({"phone": "+0123456789"}, "invalid phone number: not a phone number"),
        ({"phone": "01012345678"}, "invalid phone number: not a mobile phone number"),
        ({"phone": "138-1234-567x"}, BAD_CHARACTERS),
        (
            {"phone": "\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"},
            BAD_CHARACTERS,
        ),
        ({"phone": ""}, "invalid phone number: phone number is required"),
        ({"phone": "1" * 33}, "phone is too long (at most 32 characters)"),
        ({"phone": 13812345678}, "phone must be a string"),
        ({}, "missing field: phone"),
    ],
)
async def test_send_to_an_invalid_phone(
    client: httpx.AsyncClient, code_service: RunningCodeService, body: dict[str, Any], msg: str
) -> None:
    resp = await client.post("/users/login_sms/code/send", json=body)

    assert resp.status_code == 200
    assert resp.json() == _bad_input(msg)
    assert code_service.servicer.send_calls == []


async def test_send_with_sms_service_down(
    client: httpx.AsyncClient, code_service: RunningCodeService
) -> None:
    await code_service.server.stop(None)

    resp = await _send(client)

    assert resp.status_code == 200
    assert resp.json() == SYSTEM_ERROR


async def test_send_failed_is_a_system_error(
    client: httpx.AsyncClient, code_service: RunningCodeService
) -> None:
    code_service.servicer.send_fails = True

    resp = await _send(client)

    assert resp.json() == SYSTEM_ERROR


async def test_login_creates_the_user_then_finds_it(
    client: httpx.AsyncClient,
    code_service: RunningCodeService,
    user_service: RunningUserService,
) -> None:
    ok_before = _logins("sms", "ok")
    await _send(client)
    code = code_service.servicer.sent[("login", E164)]

    first = await _login(client, code)

    assert first.status_code == 200
    assert first.json() == OK
    access, refresh = first.headers["x-jwt-token"], first.headers["x-refresh-token"]
    assert access
    assert refresh
    [created] = user_service.servicer.users.values()
    assert created.phone == E164
    profile = await client.get("/users/profile", headers=bearer(access))
    assert profile.json()["Phone"] == E164
    refreshed = await client.post("/users/refresh_token", headers=bearer(refresh))
    assert refreshed.json() == OK

    code_service.servicer.allow_resend("login", E164)
    await _send(client)
    second = await _login(client, code_service.servicer.sent[("login", E164)])

    assert second.json() == OK
    assert len(user_service.servicer.users) == 1
    assert _logins("sms", "ok") - ok_before == 2


async def test_a_code_works_once(
    client: httpx.AsyncClient, code_service: RunningCodeService
) -> None:
    await _send(client)
    code = code_service.servicer.sent[("login", E164)]
    assert (await _login(client, code)).json() == OK

    again = await _login(client, code)

    assert again.json() == _bad_input("wrong or expired code")
    assert "x-jwt-token" not in again.headers


async def test_wrong_code_then_too_many_tries(
    client: httpx.AsyncClient, code_service: RunningCodeService
) -> None:
    wrong_before = _logins("sms", "wrong_code")
    too_many_before = _logins("sms", "too_many_attempts")
    await _send(client)
    code = code_service.servicer.sent[("login", E164)]

    wrong = [await _login(client, _wrong(code)) for _ in range(3)]
    fourth = await _login(client, code)

    for resp in wrong:
        assert resp.status_code == 200
        assert resp.json() == _bad_input("wrong or expired code")
        assert "x-jwt-token" not in resp.headers
    assert fourth.json() == _bad_input("too many attempts, request a new code")
    assert "x-jwt-token" not in fourth.headers
    assert _logins("sms", "wrong_code") - wrong_before == 3
    assert _logins("sms", "too_many_attempts") - too_many_before == 1


async def test_code_without_a_send(client: httpx.AsyncClient) -> None:
    resp = await _login(client, "123456")

    assert resp.json() == _bad_input("wrong or expired code")


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({"phone": PHONE, "code": "12345"}, "code must be 6 digits"),
        ({"phone": PHONE, "code": "1234567"}, "code must be 6 digits"),
        ({"phone": PHONE, "code": "12a456"}, "code must be 6 digits"),
        # Fullwidth digits are digits to str.isdigit, not to the code service.
        ({"phone": PHONE, "code": "\uff11\uff12\uff13\uff14\uff15\uff16"}, "code must be 6 digits"),
        ({"phone": PHONE, "code": 123456}, "code must be a string"),
        ({"phone": PHONE}, "missing field: code"),
        ({"phone": "x", "code": "123456"}, BAD_CHARACTERS),
        ({"phone": "12345", "code": "123456"}, NOT_VALID),
    ],
)
async def test_login_input_is_checked_at_the_edge(
    client: httpx.AsyncClient,
    code_service: RunningCodeService,
    body: dict[str, Any],
    msg: str,
) -> None:
    resp = await client.post("/users/login_sms", json=body)

    assert resp.json() == _bad_input(msg)
    assert code_service.servicer.verify_calls == []


async def test_login_with_sms_service_down(
    client: httpx.AsyncClient, code_service: RunningCodeService
) -> None:
    errors_before = _logins("sms", "error")
    await code_service.server.stop(None)

    resp = await _login(client, "123456")

    assert resp.json() == SYSTEM_ERROR
    assert _logins("sms", "error") - errors_before == 1


async def test_login_with_user_service_down(
    client: httpx.AsyncClient,
    code_service: RunningCodeService,
    user_service: RunningUserService,
) -> None:
    await _send(client)
    await user_service.server.stop(None)

    resp = await _login(client, code_service.servicer.sent[("login", E164)])

    assert resp.json() == SYSTEM_ERROR
    assert "x-jwt-token" not in resp.headers


async def test_phone_numbers_and_codes_are_never_logged(
    client: httpx.AsyncClient,
    code_service: RunningCodeService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await _send(client)).json() == OK
    code = code_service.servicer.sent[("login", E164)]
    assert (await _login(client, _wrong(code))).json()["code"] == 4
    assert (await _login(client, code)).json() == OK
    assert (await _send(client)).json()["code"] == 4  # too frequent

    formatter = JsonFormatter("gateway")
    lines = [formatter.format(record) for record in caplog.records]
    assert any("+86****5678" in line for line in lines)
    for line in lines:
        assert PHONE not in line
        assert E164 not in line
        assert code not in line
        assert _wrong(code) not in line
