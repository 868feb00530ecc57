"""RunReconciliation: orders WeChat Pay never notified are completed or closed, under the
scheduler's fencing token."""

from __future__ import annotations

import time

import grpc
import pytest
from sqlalchemy import insert

from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.fencing import fencing_metadata
from kit.sql import create_engine
from services.payment.domain import PaymentStatus
from services.payment.errors import Reason
from services.payment.repository.dao import PaymentRow
from services.payment.tests.conftest import Emulated, Payment, ServePayment, trade_no
from services.payment.tests.support import outbox_rows
from webook.payment.v1 import payment_pb2

pytestmark = pytest.mark.integration


async def run(payment: Payment, token: int | None) -> payment_pb2.RunReconciliationResponse:
    metadata = fencing_metadata(token, "payment-reconciliation") if token is not None else None
    return await payment.stub.RunReconciliation(
        payment_pb2.RunReconciliationRequest(), metadata=metadata, timeout=60
    )


async def status(payment: Payment, no: str) -> int:
    answer = await payment.stub.GetPayment(payment_pb2.GetPaymentRequest(biz_trade_no=no))
    return answer.payment.status


async def order_wechat_never_saw(database_url: str, no: str) -> None:
    """An INIT order whose prepay never reached WeChat Pay (the process died, or WeChat Pay
    failed, between the row and the call)."""
    now = int(time.time() * 1000)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(PaymentRow).values(
                    biz_trade_no=no,
                    amount_fen=4,
                    description="reward",
                    status=int(PaymentStatus.INIT),
                    code_url="",
                    txn_id="",
                    ctime=now,
                    utime=now,
                    paid_ms=None,
                )
            )
    finally:
        await engine.dispose()


async def test_paid_orders_are_completed_and_unpaid_ones_closed(
    serve_payment: ServePayment, emulator: Emulated
) -> None:
    payment = await serve_payment(reconcile_after_seconds=0)
    paid, unpaid, unseen = trade_no(), trade_no(), trade_no()
    for no in (paid, unpaid):
        await payment.stub.Prepay(
            payment_pb2.PrepayRequest(biz_trade_no=no, amount_fen=4, description="reward")
        )
    emulator.emulator.pay(paid, notify=False)  # paid; the notification never arrives
    await order_wechat_never_saw(payment.settings.database_url, unseen)

    result = await run(payment, 5)

    assert (result.checked, result.completed, result.closed) == (3, 1, 2)
    assert await status(payment, paid) == payment_pb2.PAYMENT_STATUS_SUCCESS
    assert await status(payment, unpaid) == payment_pb2.PAYMENT_STATUS_FAILED
    assert await status(payment, unseen) == payment_pb2.PAYMENT_STATUS_FAILED
    assert emulator.emulator.transaction(unpaid)["trade_state"] == "CLOSED"  # cannot be paid
    for no in (paid, unpaid, unseen):
        assert len(await outbox_rows(payment.settings.database_url, no)) == 1, no
    again = await run(payment, 5)  # the same run retried: accepted, nothing left to do
    assert (again.checked, again.completed, again.closed) == (0, 0, 0)


async def test_recent_orders_wait_for_their_notification(
    serve_payment: ServePayment,
) -> None:
    payment = await serve_payment(reconcile_after_seconds=1800)
    no = trade_no()
    await payment.stub.Prepay(
        payment_pb2.PrepayRequest(biz_trade_no=no, amount_fen=4, description="reward")
    )
    result = await run(payment, 1)
    assert result.checked == 0
    assert await status(payment, no) == payment_pb2.PAYMENT_STATUS_INIT


async def test_stale_or_missing_fencing_tokens_are_refused(payment: Payment) -> None:
    await run(payment, 10)
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await run(payment, 9)
    assert stale.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert app_error_from_rpc(stale.value).reason == Reason.STALE_FENCING_TOKEN
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await run(payment, None)
    assert missing.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert app_error_from_rpc(missing.value).reason == Reason.INVALID_FENCING_TOKEN
    await run(payment, 11)
