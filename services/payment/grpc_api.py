"""gRPC servicer of ``webook.payment.v1.PaymentService``: proto ↔ domain translation only.

Every method makes one :class:`~services.payment.service.PaymentService` call;
``RunReconciliation`` reads the caller's fencing token from metadata
(:mod:`kit.grpcx.fencing`, as the scheduler's ``grpc`` executor sends it). Refusals are
:class:`kit.errors.AppError` subclasses that the server's error interceptor turns into
status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from kit.grpcx.fencing import FENCING_TOKEN_METADATA, MalformedFencingToken, fencing_token
from services.payment.domain import Payment
from services.payment.errors import PaymentInvalidArgument, Reason
from services.payment.service import PaymentService
from webook.payment.v1 import payment_pb2, payment_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def payment_to_proto(payment: Payment) -> payment_pb2.Payment:
    """The wire form of ``payment``."""
    return payment_pb2.Payment(
        biz_trade_no=payment.biz_trade_no,
        amount_fen=payment.amount_fen,
        status=payment_pb2.PaymentStatus.ValueType(payment.status),
        txn_id=payment.txn_id,
        ctime_ms=payment.ctime_ms,
        utime_ms=payment.utime_ms,
    )


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    """Serves the payment service's RPCs on top of :class:`PaymentService`."""

    def __init__(self, service: PaymentService) -> None:
        self._service = service

    async def Prepay(
        self, request: payment_pb2.PrepayRequest, context: Context
    ) -> payment_pb2.PrepayResponse:
        """Order (idempotent on ``biz_trade_no``) and answer the QR code's URL."""
        payment = await self._service.prepay(
            request.biz_trade_no, request.amount_fen, request.description
        )
        return payment_pb2.PrepayResponse(
            code_url=payment.code_url, status=payment_pb2.PaymentStatus.ValueType(payment.status)
        )

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.GetPaymentResponse:
        """An order by its business key."""
        payment = await self._service.get(request.biz_trade_no)
        return payment_pb2.GetPaymentResponse(payment=payment_to_proto(payment))

    async def HandleNotification(
        self, request: payment_pb2.HandleNotificationRequest, context: Context
    ) -> payment_pb2.HandleNotificationResponse:
        """WeChat Pay's notification, as the gateway received it."""
        await self._service.handle_notification(dict(request.headers), request.body)
        return payment_pb2.HandleNotificationResponse()

    async def SumSucceeded(
        self, request: payment_pb2.SumSucceededRequest, context: Context
    ) -> payment_pb2.SumSucceededResponse:
        """Sum and count of the payments that succeeded in a window."""
        succeeded = await self._service.sum_succeeded(request.start_ms, request.end_ms)
        return payment_pb2.SumSucceededResponse(
            amount_fen=succeeded.amount_fen, count=succeeded.count
        )

    async def RunReconciliation(
        self, request: payment_pb2.RunReconciliationRequest, context: Context
    ) -> payment_pb2.RunReconciliationResponse:
        """Complete or close the orders WeChat Pay never notified, under the caller's
        fencing token."""
        try:
            token = fencing_token(context)
        except MalformedFencingToken as exc:
            raise PaymentInvalidArgument(
                Reason.INVALID_FENCING_TOKEN, str(exc), metadata={"field": FENCING_TOKEN_METADATA}
            ) from exc
        result = await self._service.reconcile(token)
        return payment_pb2.RunReconciliationResponse(
            checked=result.checked, closed=result.closed, completed=result.completed
        )
