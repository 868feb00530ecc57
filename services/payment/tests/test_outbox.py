"""A status change and its event commit together: a process that dies after the commit,
before its relay published, loses nothing — the next process's relay publishes it."""

from __future__ import annotations

import pytest

from devstack.infra import free_port
from devstack.wechatpay_emulator import WechatPayKeys
from services.payment.tests.conftest import ServePayment, trade_no
from services.payment.tests.support import (
    consume_status_changes,
    eventually_true,
    notification,
    outbox_rows,
)
from webook.payment.v1 import payment_pb2

pytestmark = pytest.mark.integration


async def test_an_event_committed_before_a_crash_is_published_by_the_next_relay(
    serve_payment: ServePayment, wechatpay_keys: WechatPayKeys, kafka_bootstrap: str
) -> None:
    # A process whose relay can never publish (its broker address answers nothing): the
    # commit happens, the publication cannot.
    doomed = await serve_payment(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    no = trade_no()
    await doomed.stub.Prepay(
        payment_pb2.PrepayRequest(biz_trade_no=no, amount_fen=2, description="reward")
    )
    headers, body = notification(wechatpay_keys, no, "SUCCESS", 2)
    await doomed.stub.HandleNotification(
        payment_pb2.HandleNotificationRequest(headers=headers, body=body), timeout=30
    )
    await doomed.runner.stop()  # its relay is cancelled with the event unpublished
    rows = await outbox_rows(doomed.settings.database_url, no)
    assert [sent for _, sent in rows] == [None]

    survivor = await serve_payment(outbox_lease_seconds=11)

    async def published() -> bool:
        return [
            sent is not None for _, sent in await outbox_rows(doomed.settings.database_url, no)
        ] == [True]

    assert await eventually_true(published, within_s=180)
    events = await consume_status_changes(kafka_bootstrap, [no], expected=1)
    assert [(e.biz_trade_no, e.status) for e in events] == [
        (no, payment_pb2.PAYMENT_STATUS_SUCCESS)
    ]
    answer = await survivor.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=no))
    assert answer.payment.status == payment_pb2.PAYMENT_STATUS_SUCCESS
