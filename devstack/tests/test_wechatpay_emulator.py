"""The WeChat Pay emulator behaves like WeChat Pay API v3 where the payment service depends
on it: merchant signatures checked, answers and notifications signed with the platform key,
resources encrypted with the API v3 key, notifications retried until acknowledged."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.infra import free_port
from devstack.wechatpay_emulator import (
    EMULATOR_HEADER,
    WechatPayEmulator,
    WechatPayKeys,
    ensure_keys,
    serve_app,
    serving,
)

PREPAY = "/v3/pay/transactions/native"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> WechatPayKeys:
    return ensure_keys(tmp_path_factory.mktemp("wechatpay") / "keys")


@pytest.fixture
async def base_url(keys: WechatPayKeys) -> AsyncIterator[str]:
    emulator = WechatPayEmulator.from_keys(keys, retry_scale=0.001)
    async with serving(emulator, free_port()) as url:
        yield url


def authorization(keys: WechatPayKeys, method: str, target: str, body: bytes) -> str:
    key = serialization.load_pem_private_key(keys.merchant_key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    stamp, nonce = str(int(time.time())), secrets.token_hex(16)
    message = f"{method}\n{target}\n{stamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
    return (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{keys.mchid}",nonce_str="{nonce}",'
        f'signature="{signature.decode()}",timestamp="{stamp}",serial_no="{keys.merchant_serial}"'
    )


def verify(keys: WechatPayKeys, headers: httpx.Headers | dict[str, str], body: bytes) -> None:
    """Raise unless the platform certificate verifies the signature headers over ``body``."""
    lower = {name.lower(): value for name, value in headers.items()}
    certificate = x509.load_pem_x509_certificate(keys.platform_cert_file.read_bytes())
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert lower["wechatpay-serial"] == keys.platform_serial
    message = f"{lower['wechatpay-timestamp']}\n{lower['wechatpay-nonce']}\n".encode()
    public.verify(
        base64.b64decode(lower["wechatpay-signature"]),
        message + body + b"\n",
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


async def call(
    keys: WechatPayKeys, base_url: str, method: str, target: str, data: object = None
) -> httpx.Response:
    body = b"" if data is None else json.dumps(data).encode()
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.request(
            method,
            base_url + target,
            content=body or None,
            headers={"Authorization": authorization(keys, method, target, body)},
        )
    verify(keys, answer.headers, answer.content)
    assert answer.headers[EMULATOR_HEADER] == "wechatpay"
    return answer


def order(keys: WechatPayKeys, no: str, total: int, notify_url: str) -> dict[str, object]:
    return {
        "appid": keys.appid,
        "mchid": keys.mchid,
        "description": "reward",
        "out_trade_no": no,
        "notify_url": notify_url,
        "amount": {"total": total, "currency": "CNY"},
    }


def test_keys_are_made_once_and_kept_private(keys: WechatPayKeys) -> None:
    again = ensure_keys(keys.directory)
    assert again == keys
    assert len(keys.apiv3_key()) == 32
    for private in (keys.merchant_key_file, keys.platform_key_file, keys.apiv3_key_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    env = keys.service_env("WEBOOK_X_", "http://127.0.0.1:1", "http://127.0.0.1:2/cb")
    assert Path(env["WEBOOK_X_WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]) == keys.merchant_key_file


async def test_unsigned_or_badly_signed_requests_are_refused(
    keys: WechatPayKeys, base_url: str
) -> None:
    body = json.dumps(order(keys, "t-unsigned-1", 1, "http://127.0.0.1:9/cb")).encode()
    async with httpx.AsyncClient(timeout=30) as http:
        unsigned = await http.post(base_url + PREPAY, content=body)
        assert unsigned.status_code == 401
        assert unsigned.json()["code"] == "SIGN_ERROR"
        verify(keys, unsigned.headers, unsigned.content)
        # Signed for another body: the signature covers the body.
        wrong = await http.post(
            base_url + PREPAY,
            content=body,
            headers={"Authorization": authorization(keys, "POST", PREPAY, b"{}")},
        )
        assert wrong.status_code == 401


async def test_prepay_is_idempotent_and_query_close_follow(
    keys: WechatPayKeys, base_url: str
) -> None:
    no = f"t-{secrets.token_hex(8)}"
    first = await call(keys, base_url, "POST", PREPAY, order(keys, no, 5, "http://x/cb"))
    again = await call(keys, base_url, "POST", PREPAY, order(keys, no, 5, "http://x/cb"))
    assert first.status_code == again.status_code == 200
    assert first.json()["code_url"] == again.json()["code_url"]
    other = await call(keys, base_url, "POST", PREPAY, order(keys, no, 6, "http://x/cb"))
    assert (other.status_code, other.json()["code"]) == (400, "INVALID_REQUEST")
    target = f"/v3/pay/transactions/out-trade-no/{no}"
    queried = await call(keys, base_url, "GET", f"{target}?mchid={keys.mchid}")
    assert queried.json()["trade_state"] == "NOTPAY"
    closed = await call(keys, base_url, "POST", f"{target}/close", {"mchid": keys.mchid})
    assert closed.status_code == 204
    queried = await call(keys, base_url, "GET", f"{target}?mchid={keys.mchid}")
    assert queried.json()["trade_state"] == "CLOSED"
    missing = await call(keys, base_url, "GET", f"{target}x?mchid={keys.mchid}")
    assert (missing.status_code, missing.json()["code"]) == (404, "ORDER_NOT_EXIST")


async def test_paying_delivers_a_signed_encrypted_notification_until_acknowledged(
    keys: WechatPayKeys, base_url: str
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    acknowledged = asyncio.Event()

    async def receive(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        if len(received) < 3:
            return Response(status_code=500)
        acknowledged.set()
        return Response(status_code=204)

    port = free_port()
    app = Starlette(routes=[Route("/cb", receive, methods=["POST"])])
    async with serve_app(app, port):
        no = f"t-{secrets.token_hex(8)}"
        notify_url = f"http://127.0.0.1:{port}/cb"
        await call(keys, base_url, "POST", PREPAY, order(keys, no, 8, notify_url))
        async with httpx.AsyncClient(timeout=30) as http:
            paid = await http.post(base_url + "/emulator/pay", json={"out_trade_no": no})
        assert paid.json()["trade_state"] == "SUCCESS"
        await asyncio.wait_for(acknowledged.wait(), 120)

        async def report() -> dict[str, object]:
            answer = await call(keys, base_url, "GET", f"/emulator/notifications/{no}")
            data: dict[str, object] = answer.json()
            return data

        # The emulator records the acknowledgement just after the receiver answered it.
        state = await report()
        for _ in range(600):
            if state["delivered"]:
                break
            await asyncio.sleep(0.05)
            state = await report()
        assert state == {"attempts": 3, "delivered": True, "statuses": [500, 500, 204]}
    assert len(received) == 3
    headers, body = received[-1]
    verify(keys, headers, body)
    resource = json.loads(body)["resource"]
    plaintext = AESGCM(keys.apiv3_key()).decrypt(
        resource["nonce"].encode(),
        base64.b64decode(resource["ciphertext"]),
        resource["associated_data"].encode(),
    )
    transaction = json.loads(plaintext)
    assert (transaction["out_trade_no"], transaction["trade_state"]) == (no, "SUCCESS")
    assert transaction["amount"]["total"] == 8
    assert transaction["transaction_id"]
