"""The payment service as the reconciliation sees it: the sum of the payments that succeeded.

:class:`PaymentSums` is the port; :class:`RemotePayments` calls payment ``SumSucceeded``
through :class:`kit.grpcx.client.ServiceClients` (discovery, balancing, governance) with a
per-call deadline. Any failure (no instance, timeout, breaker open, refusal) becomes
:class:`~services.account.errors.AccountUnavailable` ``ACCOUNT_RECONCILIATION_FAILED``: a
run either knows the day's payments or records nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.account.errors import AccountUnavailable, Reason
from webook.payment.v1 import payment_pb2, payment_pb2_grpc

PAYMENT_SERVICE: Final = "payment"
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class PaidSum:
    """Payments that succeeded in a window: their total and how many."""

    amount_fen: int
    count: int


class PaymentSums(Protocol):
    """The payments that succeeded in a window (payment ``SumSucceeded``)."""

    async def sum_succeeded(self, start_ms: int, end_ms: int) -> PaidSum:
        """Total and count of the payments recorded successful in ``[start_ms, end_ms)``."""
        ...


def _failed(exc: BaseException) -> AccountUnavailable:
    detail = (
        f"{exc.code().name}: {exc.details()}"
        if isinstance(exc, grpc.aio.AioRpcError)
        else repr(exc)
    )
    return AccountUnavailable(
        Reason.RECONCILIATION_FAILED, f"payment SumSucceeded failed: {detail}"
    )


class RemotePayments:
    """:class:`PaymentSums` from the payment service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: Callable[[], float]) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def sum_succeeded(self, start_ms: int, end_ms: int) -> PaidSum:
        """Total and count of the payments recorded successful in ``[start_ms, end_ms)``."""
        try:
            stub = payment_pb2_grpc.PaymentServiceStub(await self._clients.channel(PAYMENT_SERVICE))
            answer = await stub.SumSucceeded(
                payment_pb2.SumSucceededRequest(start_ms=start_ms, end_ms=end_ms),
                timeout=self._timeout(),
            )
        except _CALL_FAILURES as exc:
            raise _failed(exc) from exc
        return PaidSum(amount_fen=answer.amount_fen, count=answer.count)
