"""Both services over gRPC through the real composition root (``build_runner``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.server import ServiceRunner
from kit.logging import JsonFormatter
from kit.migrations import upgrade_async
from services.sms.__main__ import build_runner
from services.sms.auth import issue_caller_token
from services.sms.domain import mask_phone
from services.sms.metrics import SmsMetrics
from services.sms.settings import CallerSettings, ProviderKind, ProviderSettings, SmsSettings
from webook.code.v1 import code_pb2, code_pb2_grpc
from webook.sms.v1 import sms_pb2, sms_pb2_grpc

pytestmark = pytest.mark.integration

JWT_KEY = "jwt-test-key-0123456789abcdef0123"
MARKETING_TOKEN = "marketing-static-token-0123456789"
OPS_TOKEN = "ops-static-token-0123456789abcdef"
PHONE = "13812345678"
E164 = "+8613812345678"


@dataclass
class Stack:
    runner: ServiceRunner
    channel: grpc.aio.Channel
    codes: code_pb2_grpc.CodeServiceAsyncStub
    sms: sms_pb2_grpc.SmsServiceAsyncStub
    sms_log: Path
    metrics: SmsMetrics

    def codes_sent_to(self, phone: str) -> list[str]:
        if not self.sms_log.exists():
            return []
        lines = [json.loads(x) for x in self.sms_log.read_text().splitlines() if x.strip()]
        return [
            m["args"][0] for m in lines if m["numbers"] == [phone] and m["tpl_id"] == "login_code"
        ]


@asynccontextmanager
async def running_stack(tmp_path: Path, redis_url: str, **overrides: Any) -> AsyncIterator[Stack]:
    """The sms process on a free port, SQLite and the session's Redis; ``overrides`` are
    settings."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await upgrade_async("sms", database_url)
    sms_log = tmp_path / "sms.log"
    settings = SmsSettings(
        mode="test",
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        database_url=database_url,
        redis_url=redis_url,
        providers=[ProviderSettings(name="local", kind=ProviderKind.LOCAL, log_file=str(sms_log))],
        callers={
            "marketing": CallerSettings(token=MARKETING_TOKEN, templates=["promo"]),
            "ops": CallerSettings(token=OPS_TOKEN, admin=True),
        },
        caller_jwt_key=JWT_KEY,
        delivery={"poll_interval_s": 0.05},
        allowed_countries=["CN", "GB"],
        **overrides,
    )
    metrics = SmsMetrics(CollectorRegistry())
    runner = build_runner(settings, metrics=metrics)
    await runner.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}")
    try:
        yield Stack(
            runner,
            channel,
            code_pb2_grpc.CodeServiceStub(channel),
            sms_pb2_grpc.SmsServiceStub(channel),
            sms_log,
            metrics,
        )
    finally:
        await channel.close(None)
        await runner.stop()


@pytest.fixture
async def stack(tmp_path: Path, redis_url: str, redis_client: object) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, redis_url) as running:
        yield running


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    error = app_error_from_rpc(failed.value)
    return failed.value.code(), error.reason


async def test_code_login_flow_over_grpc(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await stack.codes.Send(code_pb2.SendRequest(biz="login", phone=PHONE))
    [code] = stack.codes_sent_to(E164)

    status, reason = await refused(stack.codes.Send(code_pb2.SendRequest(biz="login", phone=PHONE)))
    assert (status, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "CODE_SEND_TOO_FREQUENT")

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert not (
        await stack.codes.Verify(code_pb2.VerifyRequest(biz="login", phone=PHONE, code=wrong))
    ).ok
    right = code_pb2.VerifyRequest(biz="login", phone=PHONE, code=code)
    assert (await stack.codes.Verify(right)).ok
    assert not (await stack.codes.Verify(right)).ok

    # Neither the phone number nor the code appears in any log line as it would be written.
    formatter = JsonFormatter("sms")
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert mask_phone(E164) in logged
    assert PHONE not in logged
    assert code not in logged


async def test_fourth_try_is_refused_over_grpc(stack: Stack) -> None:
    phone = "+447400123456"
    await stack.codes.Send(code_pb2.SendRequest(biz="login", phone=phone))
    [code] = stack.codes_sent_to(phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        request = code_pb2.VerifyRequest(biz="login", phone=phone, code=wrong)
        assert not (await stack.codes.Verify(request)).ok
    status, reason = await refused(
        stack.codes.Verify(code_pb2.VerifyRequest(biz="login", phone=phone, code=code))
    )
    assert (status, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "CODE_VERIFY_TOO_MANY")


@pytest.mark.parametrize(
    ("biz", "phone", "reason"),
    [
        ("login", "12345", "CODE_INVALID_PHONE"),
        ("login", "", "CODE_INVALID_PHONE"),
        ("nope", PHONE, "CODE_INVALID_BIZ"),
    ],
)
async def test_code_bad_input_is_invalid_argument(
    stack: Stack, biz: str, phone: str, reason: str
) -> None:
    send = stack.codes.Send(code_pb2.SendRequest(biz=biz, phone=phone))
    assert await refused(send) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    verify = stack.codes.Verify(code_pb2.VerifyRequest(biz=biz, phone=phone, code="123456"))
    assert await refused(verify) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


def promo(*numbers: str) -> sms_pb2.SendRequest:
    return sms_pb2.SendRequest(tpl_id="promo", args=["50%"], numbers=list(numbers or [PHONE]))


async def test_static_token_and_jwt_callers_send(stack: Stack) -> None:
    sent = await stack.sms.Send(promo(), metadata=bearer(MARKETING_TOKEN))
    assert sent.status == sms_pb2.SEND_STATUS_SENT
    assert sent.provider == "local"
    token = issue_caller_token(JWT_KEY, "crm", ["promo"], ttl_s=60)
    by_jwt = await stack.sms.Send(promo(), metadata=bearer(token))
    assert by_jwt.status == sms_pb2.SEND_STATUS_SENT
    assert by_jwt.record_id != sent.record_id


def _jwt(key: str = JWT_KEY, **claims: object) -> str:
    base: dict[str, object] = {
        "sub": "crm",
        "aud": "webook-sms",
        "exp": int(time.time()) + 60,
        "tpl": ["promo"],
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="HS256")


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer"),),
        (("authorization", f"Basic {MARKETING_TOKEN}"),),
        bearer("not-the-marketing-token-000000000"),
        bearer(MARKETING_TOKEN[:-1]),
        bearer(_jwt(key="another-key-0123456789abcdef01234")),
        bearer(_jwt(exp=int(time.time()) - 10)),
        bearer(_jwt(exp=None)),
        bearer(_jwt(aud="someone-else")),
        bearer(_jwt(sub="code")),
        bearer(_jwt(tpl="promo")),
        bearer(_jwt()[:-2] + "xx"),
        bearer(
            jwt.encode({"sub": "crm", "aud": "webook-sms", "tpl": ["promo"]}, "", algorithm="none")
        ),
    ],
    ids=[
        "missing",
        "empty-bearer",
        "not-bearer",
        "wrong-static",
        "truncated-static",
        "forged-jwt",
        "expired-jwt",
        "jwt-without-exp",
        "jwt-wrong-audience",
        "jwt-reserved-caller",
        "jwt-malformed-templates",
        "tampered-jwt",
        "alg-none-jwt",
    ],
)
async def test_bad_credentials_are_unauthenticated(
    stack: Stack, metadata: tuple[tuple[str, str], ...]
) -> None:
    status, reason = await refused(stack.sms.Send(promo(), metadata=metadata))
    assert (status, reason) == (grpc.StatusCode.UNAUTHENTICATED, "SMS_UNAUTHENTICATED")
    listing = stack.sms.ListSendRecords(sms_pb2.ListSendRecordsRequest(), metadata=metadata)
    assert (await refused(listing))[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_template_not_allowed_is_permission_denied(stack: Stack) -> None:
    request = sms_pb2.SendRequest(tpl_id="login_code", args=["123456"], numbers=[PHONE])
    for token in (MARKETING_TOKEN, _jwt()):
        status, reason = await refused(stack.sms.Send(request, metadata=bearer(token)))
        assert (status, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SMS_TEMPLATE_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (sms_pb2.SendRequest(tpl_id="", numbers=[PHONE]), "SMS_INVALID_TEMPLATE"),
        (sms_pb2.SendRequest(tpl_id="promo x", numbers=[PHONE]), "SMS_INVALID_TEMPLATE"),
        (sms_pb2.SendRequest(tpl_id="promo"), "SMS_INVALID_PHONE"),
        (sms_pb2.SendRequest(tpl_id="promo", numbers=["12345"]), "SMS_INVALID_PHONE"),
        (
            sms_pb2.SendRequest(tpl_id="promo", numbers=[f"1380000{i:04d}" for i in range(101)]),
            "SMS_TOO_MANY_NUMBERS",
        ),
        (sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], args=["x"] * 17), "SMS_INVALID_ARGS"),
        (
            sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], idempotency_key="has space"),
            "SMS_INVALID_IDEMPOTENCY_KEY",
        ),
        (
            sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], valid_for_seconds=-1),
            "SMS_INVALID_ARGS",
        ),
    ],
)
async def test_sms_bad_input_is_invalid_argument(
    stack: Stack, request_: sms_pb2.SendRequest, reason: str
) -> None:
    status, got = await refused(stack.sms.Send(request_, metadata=bearer(MARKETING_TOKEN)))
    assert (status, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


async def test_list_send_records_over_grpc(stack: Stack) -> None:
    await stack.codes.Send(code_pb2.SendRequest(biz="login", phone=PHONE))
    first = await stack.sms.Send(
        sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], idempotency_key="promo-1"),
        metadata=bearer(MARKETING_TOKEN),
    )
    again = await stack.sms.Send(
        sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], idempotency_key="promo-1"),
        metadata=bearer(MARKETING_TOKEN),
    )
    assert again.record_id == first.record_id

    admin = await stack.sms.ListSendRecords(
        sms_pb2.ListSendRecordsRequest(phone=PHONE), metadata=bearer(OPS_TOKEN)
    )
    assert [r.caller for r in admin.records] == ["marketing", "code"]
    assert all(list(r.numbers) == [mask_phone(E164)] for r in admin.records)
    assert all(r.status == sms_pb2.SEND_STATUS_SENT for r in admin.records)
    assert admin.records[0].idempotency_key == "promo-1"
    assert admin.next_cursor == 0

    by_tpl = await stack.sms.ListSendRecords(
        sms_pb2.ListSendRecordsRequest(tpl_id="login_code", status=sms_pb2.SEND_STATUS_SENT),
        metadata=bearer(OPS_TOKEN),
    )
    assert [r.caller for r in by_tpl.records] == ["code"]

    own = await stack.sms.ListSendRecords(
        sms_pb2.ListSendRecordsRequest(), metadata=bearer(MARKETING_TOKEN)
    )
    assert [r.caller for r in own.records] == ["marketing"]
    status, reason = await refused(
        stack.sms.ListSendRecords(
            sms_pb2.ListSendRecordsRequest(caller="code"), metadata=bearer(MARKETING_TOKEN)
        )
    )
    assert (status, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SMS_RECORDS_NOT_ALLOWED")
    status, reason = await refused(
        stack.sms.ListSendRecords(
            sms_pb2.ListSendRecordsRequest(limit=1000), metadata=bearer(OPS_TOKEN)
        )
    )
    assert (status, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SMS_INVALID_QUERY")


async def test_health_reports_serving(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)
    for service in ("webook.code.v1.CodeService", "webook.sms.v1.SmsService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


# --- phones and the daily limit, end to end -------------------------------------------------


async def test_country_outside_the_list_is_refused_over_grpc(stack: Stack) -> None:
    status, reason = await refused(
        stack.codes.Send(code_pb2.SendRequest(biz="login", phone="+12025550123"))
    )
    assert (status, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CODE_COUNTRY_NOT_ALLOWED")
    status, reason = await refused(
        stack.sms.Send(promo(PHONE, "+12025550123"), metadata=bearer(MARKETING_TOKEN))
    )
    assert (status, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SMS_COUNTRY_NOT_ALLOWED")
    assert not stack.sms_log.exists()


async def test_forms_of_one_number_are_sent_once_and_found_by_any_form(stack: Stack) -> None:
    sent = await stack.sms.Send(
        promo(PHONE, E164, "+86 138 1234 5678"), metadata=bearer(MARKETING_TOKEN)
    )
    [message] = [json.loads(x) for x in stack.sms_log.read_text().splitlines()]
    assert message["numbers"] == [E164]
    for form in (PHONE, E164, "138-1234-5678"):
        found = await stack.sms.ListSendRecords(
            sms_pb2.ListSendRecordsRequest(phone=form), metadata=bearer(OPS_TOKEN)
        )
        assert [r.id for r in found.records] == [sent.record_id]


@pytest.fixture
async def capped(tmp_path: Path, redis_url: str, redis_client: object) -> AsyncIterator[Stack]:
    """A stack whose daily limit is 3 messages."""
    async with running_stack(tmp_path, redis_url, daily_limit=3) as running:
        yield running


async def test_the_send_past_the_daily_limit_is_refused(
    capped: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A repeated idempotency key is the same send: it does not count twice.
    for key in ("a", "a", "b"):
        await capped.sms.Send(
            sms_pb2.SendRequest(tpl_id="promo", numbers=[PHONE], idempotency_key=key),
            metadata=bearer(MARKETING_TOKEN),
        )
    # Two numbers are two messages: only one is left.
    two = promo("13900000001", "13900000002")
    status, reason = await refused(capped.sms.Send(two, metadata=bearer(MARKETING_TOKEN)))
    assert (status, reason) == (grpc.StatusCode.UNAVAILABLE, "SMS_DAILY_LIMIT_REACHED")
    await capped.sms.Send(promo("13900000001"), metadata=bearer(MARKETING_TOKEN))

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await capped.sms.Send(promo(), metadata=bearer(MARKETING_TOKEN))
    error = app_error_from_rpc(failed.value)
    assert (failed.value.code(), error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "SMS_DAILY_LIMIT_REACHED",
    )
    assert "daily limit of 3" in error.message
    assert error.metadata["daily_limit"] == "3"
    assert 0 < int(error.metadata["retry_after_s"]) <= 86_400

    # Codes share the budget: nothing is sent, the code is not kept.
    status, reason = await refused(
        capped.codes.Send(code_pb2.SendRequest(biz="login", phone="13700000000"))
    )
    assert (status, reason) == (grpc.StatusCode.UNAVAILABLE, "CODE_SEND_FAILED")
    assert len(capped.sms_log.read_text().splitlines()) == 3

    counted = capped.metrics.daily_limit_total
    # The repeated key was counted, then given back.
    assert counted.labels("ok")._value.get() == 4
    assert counted.labels("returned")._value.get() == 1
    assert counted.labels("refused")._value.get() == 4
    assert capped.metrics.daily_used._value.get() == 3
    refusal_log = "sms daily limit reached; send refused"
    refusals = [r for r in caplog.records if r.getMessage() == refusal_log]
    assert len(refusals) == 3
    assert all(r.levelno == logging.ERROR for r in refusals)
