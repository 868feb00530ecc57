"""The WeChat Pay client against the emulator over HTTP: signatures both ways, refusals,
and the emulator refused in prod mode; the settings that guard prod."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from devstack.wechatpay_emulator import WechatPayKeys
from kit.config import Mode
from services.payment.errors import PaymentInvalidArgument, PaymentRefused, PaymentUnavailable
from services.payment.settings import PaymentSettings
from services.payment.tests.conftest import Emulated, trade_no
from services.payment.wechatpay import (
    MerchantSigner,
    PlatformVerifier,
    WechatPayClient,
    WechatPayOrderMissing,
    WechatPayOrderPaid,
    decrypt_resource,
    load_platform_key,
    load_private_key,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def client(
    http: httpx.AsyncClient,
    keys: WechatPayKeys,
    base_url: str,
    *,
    merchant_key: rsa.RSAPrivateKey | None = None,
    platform: rsa.RSAPublicKey | None = None,
    refuse_emulator: bool = False,
) -> WechatPayClient:
    return WechatPayClient(
        http,
        base_url=base_url,
        appid=keys.appid,
        notify_url="http://127.0.0.1:9/pay/callback",
        signer=MerchantSigner(
            keys.mchid,
            keys.merchant_serial,
            merchant_key or load_private_key(keys.merchant_key_file),
        ),
        verifier=PlatformVerifier(
            keys.platform_serial, platform or load_platform_key(keys.platform_cert_file)
        ),
        refuse_emulator=refuse_emulator,
    )


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_prepay_query_close_round_trip(
    http: httpx.AsyncClient, wechatpay_keys: WechatPayKeys, emulator: Emulated
) -> None:
    wechat = client(http, wechatpay_keys, emulator.base_url)
    no, paid = trade_no(), trade_no()
    code_url = await wechat.prepay_native(no, 12, "reward")
    assert await wechat.prepay_native(no, 12, "reward") == code_url
    with pytest.raises(PaymentRefused):
        await wechat.prepay_native(no, 13, "reward")
    found = await wechat.query(no)
    assert (found.out_trade_no, found.trade_state, found.total_fen) == (no, "NOTPAY", 12)
    await wechat.close(no)
    assert (await wechat.query(no)).trade_state == "CLOSED"
    await wechat.prepay_native(paid, 1, "reward")
    emulator.emulator.pay(paid, notify=False)
    with pytest.raises(WechatPayOrderPaid):
        await wechat.close(paid)
    with pytest.raises(WechatPayOrderMissing):
        await wechat.query(trade_no())


async def test_requests_signed_with_another_key_are_refused(
    http: httpx.AsyncClient, wechatpay_keys: WechatPayKeys, emulator: Emulated
) -> None:
    wechat = client(http, wechatpay_keys, emulator.base_url, merchant_key=other_key())
    with pytest.raises(PaymentRefused) as refused:
        await wechat.prepay_native(trade_no(), 1, "reward")
    assert refused.value.metadata["code"] == "SIGN_ERROR"


async def test_answers_not_signed_by_the_platform_key_are_not_believed(
    http: httpx.AsyncClient, wechatpay_keys: WechatPayKeys, emulator: Emulated
) -> None:
    wechat = client(http, wechatpay_keys, emulator.base_url, platform=other_key().public_key())
    with pytest.raises(PaymentUnavailable, match="not verifiable"):
        await wechat.prepay_native(trade_no(), 1, "reward")


async def test_a_client_in_prod_mode_refuses_the_emulator(
    http: httpx.AsyncClient, wechatpay_keys: WechatPayKeys, emulator: Emulated
) -> None:
    wechat = client(http, wechatpay_keys, emulator.base_url, refuse_emulator=True)
    with pytest.raises(PaymentUnavailable, match="emulator"):
        await wechat.prepay_native(trade_no(), 1, "reward")


def test_a_resource_altered_in_any_part_does_not_decrypt() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    sealed = AESGCM(key).encrypt(b"nonce1234567", b'{"a":1}', b"transaction")
    resource = {
        "algorithm": "AEAD_AES_256_GCM",
        "nonce": "nonce1234567",
        "associated_data": "transaction",
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    assert decrypt_resource(resource, key) == b'{"a":1}'
    flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
    for altered in (
        {**resource, "associated_data": "certificate"},
        {**resource, "nonce": "nonce7654321"},
        {**resource, "ciphertext": base64.b64encode(flipped).decode()},
        {**resource, "algorithm": "AES_128_CBC"},
    ):
        with pytest.raises(PaymentInvalidArgument):
            decrypt_resource(altered, key)
    with pytest.raises(PaymentInvalidArgument):
        decrypt_resource(resource, b"f" * 32)


def test_settings_guard_the_api_v3_key_and_prod_base_url() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        PaymentSettings(mode=Mode.TEST, wechatpay_apiv3_key="short")
    with pytest.raises(ValidationError, match="https"):
        PaymentSettings(
            mode=Mode.PROD,
            wechatpay_apiv3_key="Zq8xK2mN4pR7tV1wY5bC9dF3gH6jL0sA",
            wechatpay_base_url="http://127.0.0.1:8091",
        )
    settings = PaymentSettings(mode=Mode.TEST, wechatpay_apiv3_key="k" * 32)
    assert "k" * 32 not in repr(settings)
