"""What the reward service needs from other services, as ports, and their gRPC adapters.

Ports (the service layer depends on these only; tests give in-memory fakes):

- :class:`Articles`: who wrote a published article;
- :class:`Payments`: open a payment for a business key, and look one up.

Adapters call through :class:`kit.grpcx.client.ServiceClients` (discovery, balancing,
governance) with a per-call timeout; a refusal that means "absent" becomes ``None``, any
other failure (no instance, timeout, breaker open, refusal) becomes
:class:`~services.reward.errors.RewardUnavailable`.

- :class:`RemoteArticles`: article ``GetPublishedAuthor`` (who wrote a published article;
  counts no read);
- :class:`RemotePayments`: payment ``Prepay`` and ``GetPayment``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

import grpc

from clients.article import published_author
from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.reward.domain import PaymentStatus, PaymentUpdate
from services.reward.errors import Reason, RewardUnavailable
from webook.payment.v1 import payment_pb2, payment_pb2_grpc

logger = logging.getLogger(__name__)

PAYMENT_SERVICE: Final = "payment"
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


class Articles(Protocol):
    """The owner of articles."""

    async def published_author(self, article_id: int) -> int | None:
        """The author of article ``article_id`` if it is published now, else ``None``.

        Raises :class:`RewardUnavailable` when the article service cannot be asked.
        """
        ...


class Payments(Protocol):
    """The payment service, as rewards use it."""

    async def prepay(self, biz_trade_no: str, amount_fen: int, description: str) -> str:
        """Open (or find again: idempotent on ``biz_trade_no``) the payment; its code URL.

        Raises :class:`RewardUnavailable` when it cannot be opened.
        """
        ...

    async def lookup(self, biz_trade_no: str) -> PaymentUpdate | None:
        """The payment keyed ``biz_trade_no``; ``None`` when there is none.

        Raises :class:`RewardUnavailable` when the payment service cannot be asked.
        """
        ...


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


def _unavailable(what: str, exc: BaseException) -> RewardUnavailable:
    logger.warning("peer call failed", extra={"call": what, "error": _describe(exc)})
    return RewardUnavailable(Reason.UNAVAILABLE, f"{what} failed, please retry")


def _absent(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.NOT_FOUND


class RemoteArticles:
    """:class:`Articles` on the article service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def published_author(self, article_id: int) -> int | None:
        """The author from ``GetPublishedAuthor``; ``None`` unless published now."""
        try:
            return await published_author(self._clients, article_id, timeout_s=self._timeout)
        except _CALL_FAILURES as exc:
            raise _unavailable("article GetPublishedAuthor", exc) from exc


class RemotePayments:
    """:class:`Payments` on the payment service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def prepay(self, biz_trade_no: str, amount_fen: int, description: str) -> str:
        """``Prepay``; its ``code_url``."""
        try:
            stub = payment_pb2_grpc.PaymentServiceStub(await self._clients.channel(PAYMENT_SERVICE))
            answer = await stub.Prepay(
                payment_pb2.PrepayRequest(
                    biz_trade_no=biz_trade_no, amount_fen=amount_fen, description=description
                ),
                timeout=self._timeout,
            )
        except _CALL_FAILURES as exc:
            raise _unavailable("payment Prepay", exc) from exc
        return str(answer.code_url)

    async def lookup(self, biz_trade_no: str) -> PaymentUpdate | None:
        """``GetPayment``; ``None`` on ``NOT_FOUND``."""
        try:
            stub = payment_pb2_grpc.PaymentServiceStub(await self._clients.channel(PAYMENT_SERVICE))
            answer = await stub.GetPayment(
                payment_pb2.GetPaymentRequest(biz_trade_no=biz_trade_no), timeout=self._timeout
            )
        except _CALL_FAILURES as exc:
            if _absent(exc):
                return None
            raise _unavailable("payment GetPayment", exc) from exc
        payment = answer.payment
        return PaymentUpdate(
            biz_trade_no=payment.biz_trade_no,
            amount_fen=payment.amount_fen,
            status=payment_status(payment.status),
            at_ms=payment.utime_ms,
        )


def payment_status(value: int) -> PaymentStatus:
    """The domain value of a ``webook.payment.v1.PaymentStatus`` (unknown ones: UNKNOWN)."""
    try:
        return PaymentStatus(value)
    except ValueError:
        return PaymentStatus.UNKNOWN
