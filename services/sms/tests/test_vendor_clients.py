"""The Tencent and Aliyun clients against fake vendor servers that verify signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devstack.infra import free_port
from services.sms.providers import build_client
from services.sms.providers.port import (
    ProviderRejected,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    SmsProvider,
)
from services.sms.tests.fakes import (
    FakeAliyun,
    FakeServer,
    FakeTencent,
    aliyun_settings,
    tencent_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_tencent_send_is_signed_and_delivered(
    tencent: FakeTencent, tencent_server: FakeServer, http: httpx.AsyncClient
) -> None:
    client = build_client(tencent_settings(tencent_server.endpoint), http)
    result = await client.send("login_code", ["123456"], ["13800138000", "+447700900123"])
    assert result.provider == "tencent"
    assert result.request_id
    assert result.refused == ()
    assert tencent.bad_signatures == 0
    [delivery] = tencent.deliveries
    assert delivery.template == "1234567"
    assert delivery.numbers == ["+8613800138000", "+447700900123"]
    assert delivery.args == ["123456"]


async def test_tencent_fake_refuses_a_wrong_secret(
    tencent: FakeTencent, tencent_server: FakeServer, http: httpx.AsyncClient
) -> None:
    client = build_client(
        tencent_settings(tencent_server.endpoint, access_key_secret="wrong"), http
    )
    with pytest.raises(ProviderUnavailable, match="SignatureFailure"):
        await client.send("login_code", ["123456"], ["13800138000"])
    assert tencent.bad_signatures == 1
    assert tencent.deliveries == []


async def test_aliyun_send_is_signed_and_delivered(
    aliyun: FakeAliyun, aliyun_server: FakeServer, http: httpx.AsyncClient
) -> None:
    client = build_client(aliyun_settings(aliyun_server.endpoint), http)
    # Characters the signature's percent-encoding treats specially.
    tricky = "a b*c~d+e/f=g&h中文"
    result = await client.send("login_code", [tricky], ["13800138000", "+447700900123"])
    assert result.provider == "aliyun"
    assert aliyun.bad_signatures == 0
    [delivery] = aliyun.deliveries
    assert delivery.template == "SMS_100000001"
    assert delivery.numbers == ["13800138000", "447700900123"]
    assert delivery.args == [tricky]


async def test_aliyun_fake_refuses_a_wrong_secret(
    aliyun: FakeAliyun, aliyun_server: FakeServer, http: httpx.AsyncClient
) -> None:
    client = build_client(aliyun_settings(aliyun_server.endpoint, access_key_secret="wrong"), http)
    with pytest.raises(ProviderUnavailable, match="SignatureDoesNotMatch"):
        await client.send("login_code", ["123456"], ["13800138000"])
    assert aliyun.bad_signatures == 1


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("error", ProviderUnavailable),
        ("http500", ProviderUnavailable),
        ("throttle", ProviderThrottled),
        ("reject", ProviderRejected),
    ],
)
@pytest.mark.parametrize("vendor", ["tencent", "aliyun"])
async def test_vendor_errors_are_classified(
    vendor: str,
    mode: str,
    error: type[Exception],
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> None:
    fake, client = _client(vendor, tencent, aliyun, tencent_server, aliyun_server, http)
    fake.mode = mode
    with pytest.raises(error):
        await client.send("login_code", ["123456"], ["13800138000"])
    assert fake.deliveries == []


@pytest.mark.parametrize("vendor", ["tencent", "aliyun"])
async def test_a_slow_vendor_times_out(
    vendor: str,
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> None:
    fake, client = _client(vendor, tencent, aliyun, tencent_server, aliyun_server, http)
    fake.delay_s = 0.6
    with pytest.raises(ProviderTimeout):
        await client.send("login_code", ["123456"], ["13800138000"])


async def test_tencent_partial_refusal_is_a_success_with_refused_numbers(
    tencent: FakeTencent, tencent_server: FakeServer, http: httpx.AsyncClient
) -> None:
    tencent.mode = "partial"
    client = build_client(tencent_settings(tencent_server.endpoint), http)
    result = await client.send("login_code", ["1"], ["13800138000", "13900139000"])
    assert result.refused == (("13900139000", "LimitExceeded.PhoneNumberDailyLimit"),)


async def test_unreachable_vendor_is_unavailable(http: httpx.AsyncClient) -> None:
    client = build_client(tencent_settings(f"http://127.0.0.1:{free_port()}"), http)
    with pytest.raises(ProviderUnavailable, match="transport error"):
        await client.send("login_code", ["1"], ["13800138000"])


def _client(
    vendor: str,
    tencent: FakeTencent,
    aliyun: FakeAliyun,
    tencent_server: FakeServer,
    aliyun_server: FakeServer,
    http: httpx.AsyncClient,
) -> tuple[FakeTencent | FakeAliyun, SmsProvider]:
    if vendor == "tencent":
        return tencent, build_client(tencent_settings(tencent_server.endpoint), http)
    return aliyun, build_client(aliyun_settings(aliyun_server.endpoint), http)
