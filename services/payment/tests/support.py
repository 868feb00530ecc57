"""What the payment tests share: notifications signed like WeChat Pay's (or not quite), the
outbox rows of an order, and the events the relay published."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select

from devstack.wechatpay_emulator import WechatPayKeys
from kit.events import BatchConsumer, ConsumedEvent, ConsumerConfig, TopicHandler, protobuf_decoder
from kit.sql import create_engine
from services.payment.events import STATUS_CHANGED_TOPIC
from services.payment.repository.dao import PaymentOutboxRow
from webook.payment.v1 import payment_pb2


def transaction(
    keys: WechatPayKeys, out_trade_no: str, trade_state: str, total: int
) -> dict[str, object]:
    """A transaction as WeChat Pay reports it."""
    return {
        "appid": keys.appid,
        "mchid": keys.mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": f"4200{secrets.token_hex(8)}",
        "trade_type": "NATIVE",
        "trade_state": trade_state,
        "amount": {"total": total, "currency": "CNY"},
    }


def platform_key(keys: WechatPayKeys) -> rsa.RSAPrivateKey:
    """The emulated platform's private key."""
    key = serialization.load_pem_private_key(keys.platform_key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def signed(
    body: bytes,
    key: rsa.RSAPrivateKey,
    serial: str,
    *,
    timestamp: int | None = None,
) -> dict[str, str]:
    """WeChat Pay's signature headers of ``body`` made with ``key``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    message = f"{stamp}\n{nonce}\n".encode() + body + b"\n"
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Wechatpay-Timestamp": stamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def notification_body(apiv3_key: bytes, data: dict[str, object]) -> bytes:
    """A notification envelope whose resource is ``data`` encrypted with ``apiv3_key``."""
    nonce, associated = secrets.token_hex(6), "transaction"
    sealed = AESGCM(apiv3_key).encrypt(
        nonce.encode(), json.dumps(data).encode(), associated.encode()
    )
    return json.dumps(
        {
            "id": secrets.token_hex(8),
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": associated,
                "nonce": nonce,
                "original_type": "transaction",
            },
        }
    ).encode()


def notification(
    keys: WechatPayKeys, out_trade_no: str, trade_state: str, total: int
) -> tuple[dict[str, str], bytes]:
    """A correctly signed and encrypted notification of ``out_trade_no`` in ``trade_state``."""
    body = notification_body(keys.apiv3_key(), transaction(keys, out_trade_no, trade_state, total))
    return signed(body, platform_key(keys), keys.platform_serial), body


async def outbox_rows(database_url: str, out_trade_no: str) -> list[tuple[bytes, int | None]]:
    """``(payload, sent_ms)`` of the outbox rows of ``out_trade_no``, in id order."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(PaymentOutboxRow.payload, PaymentOutboxRow.sent_ms)
                .where(PaymentOutboxRow.event_key == out_trade_no)
                .order_by(PaymentOutboxRow.id)
            )
            return [(bytes(row[0]), row[1]) for row in rows]
    finally:
        await engine.dispose()


async def unsent(database_url: str) -> int:
    """Outbox rows not yet published."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(PaymentOutboxRow)
                .where(PaymentOutboxRow.sent_ms.is_(None))
            )
            return int(count or 0)
    finally:
        await engine.dispose()


async def consume_status_changes(
    bootstrap: str, trade_nos: Sequence[str], expected: int, within_s: float = 120.0
) -> list[payment_pb2.PaymentStatusChanged]:
    """The ``PaymentStatusChanged`` events of ``trade_nos``, read from the start of the
    topic until ``expected`` of them arrived (or the deadline passed)."""
    wanted = set(trade_nos)
    seen: list[payment_pb2.PaymentStatusChanged] = []
    enough = asyncio.Event()

    async def collect(batch: Sequence[ConsumedEvent[payment_pb2.PaymentStatusChanged]]) -> None:
        seen.extend(e.payload for e in batch if e.payload.biz_trade_no in wanted)
        if len(seen) >= expected:
            enough.set()

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=bootstrap,
            group_id=f"test-payment-{secrets.token_hex(6)}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_wait_s=0.2,
        ),
        {
            STATUS_CHANGED_TOPIC: TopicHandler(
                protobuf_decoder(payment_pb2.PaymentStatusChanged), collect
            )
        },
    )
    consumer.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), within_s)
    finally:
        await consumer.stop()
    return seen


async def eventually_true(check: Callable[[], Awaitable[bool]], within_s: float = 120.0) -> bool:
    """Poll the async ``check()`` until it is true or ``within_s`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return await check()
