"""Verification codes on a real Redis: rate of sends, life, tries, single use, races."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from devstack.infra import free_port
from kit.errors import AppError
from kit.redisx import create_redis
from services.sms.code_service import CodeService
from services.sms.domain import CodeRules, PhoneRules, SendStatus
from services.sms.errors import (
    CodeInvalidArgument,
    CodeReason,
    CodeResourceExhausted,
    CodeUnavailable,
    SmsReason,
    SmsRejected,
)
from services.sms.metrics import SmsMetrics
from services.sms.repository.cache import RedisCodeStore, code_key
from services.sms.tests.fakes import RecordingSender

pytestmark = pytest.mark.integration

KEY = b"test-hmac-key"
PHONE = "13800138000"
# The key every form of PHONE is stored and sent under.
E164 = "+8613800138000"


@pytest.fixture
async def store_client(
    redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[aioredis.Redis]:
    # redis_client flushed the database; the service uses its own pooled client. A generous
    # timeout: these tests are about what concurrent callers see, and on a loaded machine a
    # hundred commands at once can take longer than the production 0.5 s, after which the
    # client's short-circuit would refuse every other command.
    client = create_redis(redis_url, timeout=5.0)
    yield client
    await client.aclose(close_connection_pool=True)


def make_service(
    client: aioredis.Redis, sender: RecordingSender, rules: CodeRules | None = None
) -> tuple[CodeService, SmsMetrics]:
    metrics = SmsMetrics(CollectorRegistry())
    service = CodeService(
        RedisCodeStore(client),
        sender,
        rules=rules or CodeRules(),
        templates={"login": "login_code"},
        hmac_key=KEY,
        metrics=metrics,
    )
    return service, metrics


def last_code(sender: RecordingSender) -> str:
    return sender.sent[-1][1].args[0]


async def test_send_stores_only_a_keyed_hash(
    store_client: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", PHONE)
    caller, command = sender.sent[0]
    code = command.args[0]
    assert caller.name == "code"
    assert command.tpl_id == "login_code"
    assert command.numbers == (E164,)
    assert command.valid_for_s == 600
    assert len(code) == 6
    assert code.isdigit()

    stored = await redis_client.hgetall(code_key("login", E164))
    assert set(stored) == {b"digest", b"left"}
    assert stored[b"left"] == b"3"
    resend_values = [await redis_client.get(k) for k in await redis_client.keys("*resend")]
    everything = repr(stored) + repr(resend_values)
    assert code not in everything
    expected = hmac.new(KEY, f"login\x00{E164}\x00{code}".encode(), hashlib.sha256).hexdigest()
    assert stored[b"digest"] == expected.encode()
    ttl = await redis_client.pttl(code_key("login", E164))
    assert 590_000 < ttl <= 600_000


async def test_resend_within_interval_is_refused_then_allowed(
    store_client: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    sender = RecordingSender()
    service, metrics = make_service(store_client, sender)
    await service.send("login", PHONE)
    first = last_code(sender)
    resend_key = code_key("login", E164) + ":resend"
    assert 50_000 < await redis_client.pttl(resend_key) <= 60_000
    with pytest.raises(CodeResourceExhausted) as refused:
        await service.send("login", PHONE)
    assert refused.value.reason == CodeReason.SEND_TOO_FREQUENT
    # Another phone is independent.
    await service.send("login", "13900139000")
    # Let the 60 s pass: the guard's expiry is all that stands in the way.
    await redis_client.pexpire(resend_key, 1)
    await asyncio.sleep(0.05)
    await service.send("login", PHONE)
    assert len(sender.sent) == 3
    # The new code replaced the old one.
    if first != last_code(sender):
        assert not await service.verify("login", PHONE, sender.sent[0][1].args[0])
    assert await service.verify("login", PHONE, last_code(sender))
    assert metrics.code_send_total.labels("login", "too_frequent")._value.get() == 1


async def test_expired_code_is_refused(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender, CodeRules(ttl_s=0.2, resend_interval_s=0.1))
    await service.send("login", PHONE)
    await asyncio.sleep(0.3)
    assert not await service.verify("login", PHONE, last_code(sender))


async def test_three_wrong_tries_use_the_code_up(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, metrics = make_service(store_client, sender)
    await service.send("login", PHONE)
    code = last_code(sender)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        assert not await service.verify("login", PHONE, wrong)
    with pytest.raises(CodeResourceExhausted) as refused:
        await service.verify("login", PHONE, code)
    assert refused.value.reason == CodeReason.VERIFY_TOO_MANY
    assert metrics.code_verify_total.labels("login", "wrong")._value.get() == 3
    assert metrics.code_verify_total.labels("login", "too_many")._value.get() == 1


async def test_a_verified_code_cannot_be_used_again(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", PHONE)
    code = last_code(sender)
    assert await service.verify("login", PHONE, code)
    assert not await service.verify("login", PHONE, code)


async def test_malformed_code_is_wrong_without_costing_a_try(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", PHONE)
    for bad in ("", "12345", "1234567", "abcdef", "12 456"):
        assert not await service.verify("login", PHONE, bad)
    assert await service.verify("login", PHONE, last_code(sender))


async def test_hundred_concurrent_sends_make_one_code(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    results = await asyncio.gather(
        *(service.send("login", PHONE) for _ in range(100)), return_exceptions=True
    )
    successes = [r for r in results if r is None]
    refusals = [r for r in results if isinstance(r, CodeResourceExhausted)]
    assert len(successes) == 1
    assert len(refusals) == 99
    assert len(sender.sent) == 1


async def test_hundred_concurrent_verifies_succeed_once(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", PHONE)
    code = last_code(sender)
    results = await asyncio.gather(*(service.verify("login", PHONE, code) for _ in range(100)))
    assert results.count(True) == 1


async def test_queued_sms_still_counts_as_sent(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    sender.status = SendStatus.WAITING
    service, _ = make_service(store_client, sender)
    await service.send("login", PHONE)
    assert await service.verify("login", PHONE, last_code(sender))


@pytest.mark.parametrize(
    "failure",
    [
        SmsRejected(SmsReason.REJECTED, "refused"),
        AppError("SMS_UNAVAILABLE", "store down"),
    ],
)
async def test_failed_sms_discards_the_code_so_the_user_can_retry(
    store_client: aioredis.Redis, redis_client: aioredis.Redis, failure: AppError
) -> None:
    sender = RecordingSender()
    sender.error = failure
    service, metrics = make_service(store_client, sender)
    with pytest.raises(CodeUnavailable) as failed:
        await service.send("login", PHONE)
    assert failed.value.reason == CodeReason.SEND_FAILED
    assert await redis_client.keys("sms:code:*") == []
    sender.error = None
    await service.send("login", PHONE)
    assert await service.verify("login", PHONE, last_code(sender))
    assert metrics.code_send_total.labels("login", "send_failed")._value.get() == 1


@pytest.mark.parametrize(
    ("biz", "phone", "reason"),
    [
        ("login", "12345", CodeReason.INVALID_PHONE),
        ("login", "", CodeReason.INVALID_PHONE),
        ("login", "+0123456789", CodeReason.INVALID_PHONE),
        ("register", PHONE, CodeReason.INVALID_BIZ),
        ("", PHONE, CodeReason.INVALID_BIZ),
    ],
)
async def test_bad_input_is_refused(
    store_client: aioredis.Redis, biz: str, phone: str, reason: CodeReason
) -> None:
    service, _ = make_service(store_client, RecordingSender())
    with pytest.raises(CodeInvalidArgument) as refused:
        await service.send(biz, phone)
    assert refused.value.reason == reason
    with pytest.raises(CodeInvalidArgument):
        await service.verify(biz, phone, "123456")


async def test_redis_down_is_unavailable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        service, _ = make_service(client, RecordingSender())
        with pytest.raises(CodeUnavailable) as failed:
            await service.send("login", PHONE)
        assert failed.value.reason == CodeReason.STORE_UNAVAILABLE
        with pytest.raises(CodeUnavailable):
            await service.verify("login", PHONE, "123456")
    finally:
        await client.aclose(close_connection_pool=True)


# --- one phone, whatever its spelling -------------------------------------------------------

FORMS = ("13900000003", "+8613900000003", "+86 139 0000 0003", "0086-139-0000-0003")


async def test_forms_of_one_number_share_one_resend_interval(
    store_client: aioredis.Redis,
) -> None:
    sender = RecordingSender()
    service, metrics = make_service(store_client, sender)
    await service.send("login", FORMS[0])
    for other in FORMS[1:]:
        with pytest.raises(CodeResourceExhausted) as refused:
            await service.send("login", other)
        assert refused.value.reason == CodeReason.SEND_TOO_FREQUENT
    assert [command.numbers for _, command in sender.sent] == [("+8613900000003",)]
    assert metrics.code_send_total.labels("login", "too_frequent")._value.get() == 3


async def test_a_code_sent_to_one_form_verifies_with_the_other(
    store_client: aioredis.Redis,
) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", "13900000003")
    assert await service.verify("login", "+8613900000003", last_code(sender))
    # Consumed for every form.
    assert not await service.verify("login", "13900000003", last_code(sender))


async def test_forms_of_one_number_share_one_count_of_tries(
    store_client: aioredis.Redis,
) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    await service.send("login", "+8613900000003")
    code = last_code(sender)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    # Three wrong tries spread over three spellings use the code up for all of them.
    for form in FORMS[:3]:
        assert not await service.verify("login", form, wrong)
    for form in FORMS:
        with pytest.raises(CodeResourceExhausted) as refused:
            await service.verify("login", form, code)
        assert refused.value.reason == CodeReason.VERIFY_TOO_MANY


@pytest.mark.parametrize(("phone", "country"), [("+447400123456", "GB"), ("+12025550123", "US")])
async def test_numbers_outside_the_allowed_countries_are_refused(
    store_client: aioredis.Redis, redis_client: aioredis.Redis, phone: str, country: str
) -> None:
    sender = RecordingSender()
    service, _ = make_service(store_client, sender)
    with pytest.raises(CodeInvalidArgument) as refused:
        await service.send("login", phone)
    assert refused.value.reason == CodeReason.COUNTRY_NOT_ALLOWED
    assert refused.value.metadata == {"field": "phone", "country": country}
    assert country in refused.value.message
    assert sender.sent == []
    assert await redis_client.keys("sms:code:*") == []
    with pytest.raises(CodeInvalidArgument):
        await service.verify("login", phone, "123456")


async def test_allowed_countries_are_configurable(store_client: aioredis.Redis) -> None:
    sender = RecordingSender()
    service = CodeService(
        RedisCodeStore(store_client),
        sender,
        rules=CodeRules(),
        templates={"login": "login_code"},
        hmac_key=KEY,
        metrics=SmsMetrics(CollectorRegistry()),
        phones=PhoneRules(allowed_countries=frozenset({"CN", "GB"})),
    )
    await service.send("login", "+44 7400 123456")
    assert sender.sent[0][1].numbers == ("+447400123456",)
