"""The payment service over gRPC with the WeChat Pay emulator as a real HTTP server:
idempotent prepay, notifications verified and applied once, forward only, with their event
in the outbox."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.wechatpay_emulator import WechatPayKeys
from kit.grpcx.errors import app_error_from_rpc
from services.payment.errors import DOMAIN, Reason
from services.payment.tests.conftest import Callback, Emulated, Payment, trade_no
from services.payment.tests.support import (
    consume_status_changes,
    eventually_true,
    notification,
    notification_body,
    outbox_rows,
    platform_key,
    signed,
    transaction,
)
from webook.payment.v1 import payment_pb2

pytestmark = pytest.mark.integration

INIT = payment_pb2.PAYMENT_STATUS_INIT
SUCCESS = payment_pb2.PAYMENT_STATUS_SUCCESS
FAILED = payment_pb2.PAYMENT_STATUS_FAILED
REFUND = payment_pb2.PAYMENT_STATUS_REFUND


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    error = app_error_from_rpc(exc)
    assert error.domain == DOMAIN
    return error.reason


async def prepay(payment: Payment, no: str, amount: int = 1) -> payment_pb2.PrepayResponse:
    return await payment.stub.Prepay(
        payment_pb2.PrepayRequest(biz_trade_no=no, amount_fen=amount, description="reward"),
        timeout=30,
    )


async def status(payment: Payment, no: str) -> int:
    answer = await payment.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=no))
    return answer.payment.status


async def deliver(payment: Payment, headers: dict[str, str], body: bytes) -> None:
    await payment.stub.HandleNotification(
        payment_pb2.HandleNotificationRequest(headers=headers, body=body), timeout=30
    )


async def test_prepay_is_idempotent_on_the_business_trade_number(
    payment: Payment, emulator: Emulated
) -> None:
    no = trade_no()
    first = await prepay(payment, no, 7)
    again = await prepay(payment, no, 7)
    assert first.code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert (again.code_url, again.status) == (first.code_url, INIT)
    found = await payment.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=no))
    assert (found.payment.amount_fen, found.payment.status) == (7, INIT)
    assert emulator.emulator.transaction(no)["amount"] == {"total": 7, "currency": "CNY"}

    with pytest.raises(grpc.aio.AioRpcError) as other_amount:
        await prepay(payment, no, 8)
    assert other_amount.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(other_amount.value) == Reason.AMOUNT_MISMATCH
    for bad_no, amount in (("short", 1), (trade_no(), 0), ("with space 123", 1)):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await prepay(payment, bad_no, amount)
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await payment.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=trade_no()))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


async def test_scan_and_pay_reaches_the_service_through_retried_notifications(
    payment: Payment, emulator: Emulated, callback: Callback, kafka_bootstrap: str
) -> None:
    no = trade_no()
    await prepay(payment, no, 100)
    callback.refuse_next = 2  # the gateway is down twice: WeChat Pay retries
    emulator.emulator.pay(no)

    async def paid() -> bool:
        return await status(payment, no) == SUCCESS

    assert await eventually_true(paid)
    delivery = emulator.emulator.deliveries[no]
    assert delivery.delivered
    assert delivery.statuses == [503, 503, 204]
    found = await payment.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=no))
    assert found.payment.txn_id == emulator.emulator.transaction(no)["transaction_id"]
    events = await consume_status_changes(kafka_bootstrap, [no], expected=1)
    assert [(e.biz_trade_no, e.amount_fen, e.status) for e in events] == [(no, 100, SUCCESS)]


async def test_forged_tampered_stale_or_unreadable_notifications_change_nothing(
    payment: Payment, wechatpay_keys: WechatPayKeys
) -> None:
    no = trade_no()
    await prepay(payment, no, 5)
    headers, body = notification(wechatpay_keys, no, "SUCCESS", 5)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    readable = notification_body(
        wechatpay_keys.apiv3_key(), transaction(wechatpay_keys, no, "SUCCESS", 5)
    )
    other_key = notification_body(b"k" * 32, transaction(wechatpay_keys, no, "SUCCESS", 5))
    platform = platform_key(wechatpay_keys)
    serial = wechatpay_keys.platform_serial
    tampered = body.replace(b'"transaction"', b'"transactioN"', 1)
    assert tampered != body
    refusals = {
        "tampered body": (headers, tampered, grpc.StatusCode.UNAUTHENTICATED),
        "forged signature": (signed(body, forger, serial), body, grpc.StatusCode.UNAUTHENTICATED),
        "unknown serial": (signed(body, platform, "0BAD"), body, grpc.StatusCode.UNAUTHENTICATED),
        "stale timestamp": (
            signed(readable, platform, serial, timestamp=int(time.time()) - 600),
            readable,
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "no signature": ({}, body, grpc.StatusCode.UNAUTHENTICATED),
        "another API v3 key": (
            signed(other_key, platform, serial),
            other_key,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "not JSON": (
            signed(b"{oops", platform, serial),
            b"{oops",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    }
    for what, (refused_headers, refused_body, code) in refusals.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await deliver(payment, refused_headers, refused_body)
        assert refused.value.code() is code, what
        expected = (
            Reason.BAD_SIGNATURE
            if code is grpc.StatusCode.UNAUTHENTICATED
            else (Reason.MALFORMED_NOTIFICATION)
        )
        assert reason_of(refused.value) == expected, what
    assert await status(payment, no) == INIT
    assert await outbox_rows(payment.settings.database_url, no) == []
    # The genuine one still works.
    await deliver(payment, headers, body)
    assert await status(payment, no) == SUCCESS


async def test_replayed_and_concurrent_copies_move_the_order_once(
    payment: Payment, wechatpay_keys: WechatPayKeys, kafka_bootstrap: str
) -> None:
    replayed, concurrent = trade_no(), trade_no()
    for no in (replayed, concurrent):
        await prepay(payment, no, 3)
    headers, body = notification(wechatpay_keys, replayed, "SUCCESS", 3)
    await deliver(payment, headers, body)
    await deliver(payment, headers, body)
    headers, body = notification(wechatpay_keys, concurrent, "SUCCESS", 3)
    await asyncio.gather(*(deliver(payment, headers, body) for _ in range(10)))
    for no in (replayed, concurrent):
        assert await status(payment, no) == SUCCESS
        rows = await outbox_rows(payment.settings.database_url, no)
        assert len(rows) == 1, no
        event = payment_pb2.PaymentStatusChanged.FromString(rows[0][0])
        assert (event.biz_trade_no, event.amount_fen, event.status) == (no, 3, SUCCESS)
    events = await consume_status_changes(kafka_bootstrap, [replayed, concurrent], expected=2)
    assert sorted(e.biz_trade_no for e in events) == sorted([replayed, concurrent])


async def test_status_moves_forward_only(payment: Payment, wechatpay_keys: WechatPayKeys) -> None:
    paid, closed = trade_no(), trade_no()
    for no in (paid, closed):
        await prepay(payment, no, 9)

    async def report(no: str, trade_state: str) -> None:
        await deliver(payment, *notification(wechatpay_keys, no, trade_state, 9))

    await report(paid, "NOTPAY")  # not final: nothing happens
    assert await status(payment, paid) == INIT
    await report(paid, "SUCCESS")
    await report(paid, "CLOSED")  # late and backwards: ignored
    assert await status(payment, paid) == SUCCESS
    await report(paid, "REFUND")
    await report(paid, "SUCCESS")
    assert await status(payment, paid) == REFUND
    await report(closed, "CLOSED")
    await report(closed, "SUCCESS")
    assert await status(payment, closed) == FAILED
    statuses = [
        payment_pb2.PaymentStatusChanged.FromString(payload).status
        for payload, _ in await outbox_rows(payment.settings.database_url, paid)
    ]
    assert statuses == [SUCCESS, REFUND]
    assert len(await outbox_rows(payment.settings.database_url, closed)) == 1


async def test_unknown_orders_and_wrong_amounts_are_refused(
    payment: Payment, wechatpay_keys: WechatPayKeys
) -> None:
    no = trade_no()
    await prepay(payment, no, 10)
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await deliver(payment, *notification(wechatpay_keys, trade_no(), "SUCCESS", 10))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await deliver(payment, *notification(wechatpay_keys, no, "SUCCESS", 1))
    assert reason_of(wrong.value) == Reason.AMOUNT_MISMATCH
    assert await status(payment, no) == INIT


async def test_sum_succeeded_counts_the_payments_of_the_window(
    payment: Payment, wechatpay_keys: WechatPayKeys
) -> None:
    nos = [trade_no() for _ in range(3)]
    for amount, no in enumerate(nos, start=1):
        await prepay(payment, no, amount * 100)
    before = int(time.time() * 1000) - 1
    await deliver(payment, *notification(wechatpay_keys, nos[0], "SUCCESS", 100))
    await deliver(payment, *notification(wechatpay_keys, nos[1], "SUCCESS", 200))
    after = int(time.time() * 1000) + 1
    window = await payment.stub.SumSucceeded(
        payment_pb2.SumSucceededRequest(start_ms=before, end_ms=after)
    )
    assert (window.amount_fen, window.count) == (300, 2)
    earlier = await payment.stub.SumSucceeded(
        payment_pb2.SumSucceededRequest(start_ms=0, end_ms=before)
    )
    assert (earlier.amount_fen, earlier.count) == (0, 0)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await payment.stub.SumSucceeded(payment_pb2.SumSucceededRequest(start_ms=5, end_ms=5))
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_notification_bodies_are_json_objects(wechatpay_keys: WechatPayKeys) -> None:
    _, body = notification(wechatpay_keys, "t-abcdef", "SUCCESS", 1)
    assert json.loads(body)["resource"]["algorithm"] == "AEAD_AES_256_GCM"
