"""Use cases of the payment service and the ports they need.

- :meth:`PaymentService.prepay`: the order row first (INIT, unique ``biz_trade_no``), then
  WeChat Pay's Native prepay, then its ``code_url`` recorded. The same number again
  answers the same order and ``code_url``; an order without one (the prepay failed) asks
  WeChat Pay again, which answers the same order for the same ``out_trade_no``: one order,
  never a second charge.
- :meth:`PaymentService.handle_notification`: verified and decrypted by the
  :class:`Notifications` port, then applied forward only (:mod:`services.payment.domain`)
  in one transaction with its ``PaymentStatusChanged`` outbox row: concurrent or replayed
  copies move the order once and record one event.
- :meth:`PaymentService.reconcile`: the scheduler's job, under a fencing token; orders
  still INIT past the delay are queried at WeChat Pay and completed (paid) or closed
  (unpaid: closed at WeChat Pay first, so it can no longer be paid).
- :meth:`PaymentService.get` and :meth:`PaymentService.sum_succeeded`: reads.

Transactions aborted by a deadlock or lock timeout are retried (:func:`kit.sql.transact`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from kit.errors import AppError
from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.payment.domain import (
    Payment,
    PaymentStatus,
    ReconciliationResult,
    Succeeded,
    check_amount,
    check_description,
    check_trade_no,
    check_window,
    predecessors,
)
from services.payment.errors import (
    BadSignature,
    PaymentInvalidArgument,
    PaymentNotFound,
    PaymentRefused,
    PaymentUnavailable,
    Reason,
)
from services.payment.events import PaymentEvents
from services.payment.metrics import NOTIFICATIONS, ORDERS, RECONCILIATION
from services.payment.wechatpay import (
    UNPAID_STATES,
    Transaction,
    WechatPayOrderMissing,
    WechatPayOrderPaid,
    status_of,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
RECONCILIATION_JOB: Final = "reconciliation"
_WRITE_ATTEMPTS: Final = 8


class PaymentRepository(Protocol):
    """Orders and fencing tokens, inside one unit of work."""

    async def create(self, biz_trade_no: str, amount_fen: int, description: str, now: int) -> bool:
        """Insert an INIT order unless the number exists; whether it was inserted."""
        ...

    async def get(self, biz_trade_no: str) -> Payment | None:
        """The order ``biz_trade_no``."""
        ...

    async def set_code_url(self, biz_trade_no: str, code_url: str, now: int) -> bool:
        """Record the prepay's answer unless one is; whether it was."""
        ...

    async def move(
        self,
        biz_trade_no: str,
        *,
        from_statuses: Collection[PaymentStatus],
        to_status: PaymentStatus,
        txn_id: str,
        now: int,
    ) -> bool:
        """Move the order forward if it is in one of ``from_statuses``; whether it moved."""
        ...

    async def stuck(self, *, created_before: int, limit: int) -> Sequence[str]:
        """INIT orders created before ``created_before``, oldest first."""
        ...

    async def succeeded(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """Sum and count of the orders paid in the window."""
        ...

    async def accept_token(self, job: str, token: int, now: int) -> bool:
        """Record ``job``'s fencing token unless a higher one was accepted."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def payments(self) -> PaymentRepository:
        """The repository bound to this transaction."""
        ...

    @property
    def events(self) -> PaymentEvents:
        """Events recorded in this transaction (the outbox)."""
        ...


class PaymentProvider(Protocol):
    """WeChat Pay's API (:class:`services.payment.wechatpay.WechatPayClient`)."""

    async def prepay_native(self, out_trade_no: str, total_fen: int, description: str) -> str:
        """Order and return the ``code_url``."""
        ...

    async def query(self, out_trade_no: str) -> Transaction:
        """What WeChat Pay knows of the order."""
        ...

    async def close(self, out_trade_no: str) -> None:
        """Close the unpaid order."""
        ...


class Notifications(Protocol):
    """Opens notifications (:class:`services.payment.wechatpay.NotificationReader`)."""

    def open(self, headers: Mapping[str, str], body: bytes) -> Transaction:
        """The verified, decrypted transaction a notification reports."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """Which orders a reconciliation run looks up."""

    after_ms: int = 30 * 60 * 1000
    batch_size: int = 200


def wall_ms() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> PaymentUnavailable:
    return PaymentUnavailable(Reason.CONCURRENT_CONFLICT, "too many concurrent writes, retry")


class PaymentService:
    """The payment use cases (see the module)."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        provider: PaymentProvider,
        notifications: Notifications,
        *,
        reconcile_config: Callable[[], ReconcileConfig] = ReconcileConfig,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._uow = unit_of_work
        self._provider = provider
        self._notifications = notifications
        self._reconcile_config = reconcile_config
        self._clock = clock

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await transact(
            self._uow, work, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def _read(self, biz_trade_no: str) -> Payment:
        async with self._uow() as uow:
            payment = await uow.payments.get(biz_trade_no)
        if payment is None:
            raise PaymentNotFound(Reason.NOT_FOUND, f"no payment {biz_trade_no}")
        return payment

    async def prepay(self, biz_trade_no: str, amount_fen: int, description: str) -> Payment:
        """The order ``biz_trade_no`` with its ``code_url`` (see the module)."""
        check_trade_no(biz_trade_no)
        check_amount(amount_fen)
        check_description(description)
        now = self._clock()

        async def create(uow: UnitOfWork) -> tuple[bool, Payment | None]:
            created = await uow.payments.create(biz_trade_no, amount_fen, description, now)
            return created, await uow.payments.get(biz_trade_no)

        created, payment = await self._write(create)
        if payment is None:  # inserted or found in the same transaction: cannot happen
            raise PaymentUnavailable(Reason.CONCURRENT_CONFLICT, "the order vanished; retry")
        if created:
            ORDERS.labels(PaymentStatus.INIT.name).inc()
            logger.info(
                "payment order created",
                extra={"biz_trade_no": biz_trade_no, "amount_fen": amount_fen},
            )
        if payment.amount_fen != amount_fen:
            raise PaymentRefused(
                Reason.AMOUNT_MISMATCH,
                f"{biz_trade_no} is an order of {payment.amount_fen} fen, not {amount_fen}",
                metadata={"field": "amount_fen"},
            )
        if payment.code_url or payment.status is not PaymentStatus.INIT:
            return payment
        # The stored description: a retry with another one must not change the order.
        code_url = await self._provider.prepay_native(
            biz_trade_no, payment.amount_fen, payment.description
        )
        await self._write(
            lambda uow: uow.payments.set_code_url(biz_trade_no, code_url, self._clock())
        )
        return await self._read(biz_trade_no)

    async def get(self, biz_trade_no: str) -> Payment:
        """The order ``biz_trade_no``."""
        check_trade_no(biz_trade_no)
        return await self._read(biz_trade_no)

    async def sum_succeeded(self, start_ms: int, end_ms: int) -> Succeeded:
        """The payments that succeeded in ``[start_ms, end_ms)``."""
        check_window(start_ms, end_ms)
        async with self._uow() as uow:
            amount, count = await uow.payments.succeeded(start_ms, end_ms)
        return Succeeded(amount_fen=amount, count=count)

    async def handle_notification(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Apply a WeChat Pay notification; whether it changed the order (a duplicate or a
        state that is not final does not). A refusal changes nothing."""
        try:
            transaction = self._notifications.open(headers, body)
        except BadSignature as exc:
            NOTIFICATIONS.labels("bad_signature").inc()
            logger.warning("payment notification refused", extra={"error": exc.message})
            raise
        except PaymentInvalidArgument as exc:
            NOTIFICATIONS.labels("malformed").inc()
            logger.warning("payment notification unreadable", extra={"error": exc.message})
            raise
        status = status_of(transaction.trade_state)
        if status is None:
            NOTIFICATIONS.labels("pending").inc()
            logger.info(
                "payment notification of a state that is not final",
                extra={
                    "biz_trade_no": transaction.out_trade_no,
                    "trade_state": transaction.trade_state,
                },
            )
            return False
        try:
            moved = await self._apply(transaction, status)
        except PaymentNotFound:
            NOTIFICATIONS.labels("unknown_order").inc()
            raise
        except PaymentRefused:
            NOTIFICATIONS.labels("amount_mismatch").inc()
            raise
        NOTIFICATIONS.labels("applied" if moved else "duplicate").inc()
        return moved

    async def _apply(self, transaction: Transaction, status: PaymentStatus) -> bool:
        """Move the order ``transaction`` reports to ``status``, forward only, with its
        event in the same transaction; whether it moved."""
        trade_no = transaction.out_trade_no
        now = self._clock()

        async def apply(uow: UnitOfWork) -> Payment | None:
            payment = await uow.payments.get(trade_no)
            if payment is None:
                raise PaymentNotFound(Reason.NOT_FOUND, f"no payment {trade_no}")
            if status is PaymentStatus.SUCCESS and transaction.total_fen != payment.amount_fen:
                logger.error(
                    "WeChat Pay reports another amount than the order's",
                    extra={
                        "biz_trade_no": trade_no,
                        "order_fen": payment.amount_fen,
                        "reported_fen": transaction.total_fen,
                        "txn_id": transaction.transaction_id,
                    },
                )
                raise PaymentRefused(
                    Reason.AMOUNT_MISMATCH,
                    f"paid {transaction.total_fen} fen for an order of {payment.amount_fen}",
                )
            moved = await uow.payments.move(
                trade_no,
                from_statuses=predecessors(status),
                to_status=status,
                txn_id=transaction.transaction_id,
                now=now,
            )
            if not moved:
                return None
            uow.events.status_changed(trade_no, payment.amount_fen, status, at_ms=now)
            return payment

        changed = await self._write(apply)
        if changed is not None:
            self._moved(trade_no, changed.amount_fen, status, transaction.transaction_id)
        return changed is not None

    async def _fail_missing(self, trade_no: str) -> bool:
        """Close an order WeChat Pay never received (its prepay failed)."""
        now = self._clock()

        async def fail(uow: UnitOfWork) -> Payment | None:
            payment = await uow.payments.get(trade_no)
            moved = payment is not None and await uow.payments.move(
                trade_no,
                from_statuses=predecessors(PaymentStatus.FAILED),
                to_status=PaymentStatus.FAILED,
                txn_id="",
                now=now,
            )
            if payment is None or not moved:
                return None
            uow.events.status_changed(trade_no, payment.amount_fen, PaymentStatus.FAILED, at_ms=now)
            return payment

        changed = await self._write(fail)
        if changed is not None:
            self._moved(trade_no, changed.amount_fen, PaymentStatus.FAILED, "")
        return changed is not None

    @staticmethod
    def _moved(trade_no: str, amount_fen: int, status: PaymentStatus, txn_id: str) -> None:
        ORDERS.labels(status.name).inc()
        logger.info(
            "payment status changed",
            extra={
                "biz_trade_no": trade_no,
                "status": status.name,
                "amount_fen": amount_fen,
                "txn_id": txn_id,
            },
        )

    async def reconcile(self, fencing_token: int | None) -> ReconciliationResult:
        """Complete or close the orders still INIT past the delay, under ``fencing_token``
        (refused when missing, or lower than one accepted before)."""
        if fencing_token is None or fencing_token <= 0:
            raise PaymentInvalidArgument(
                Reason.INVALID_FENCING_TOKEN, "RunReconciliation needs a fencing token"
            )
        now = self._clock()
        accepted = await self._write(
            lambda uow: uow.payments.accept_token(RECONCILIATION_JOB, fencing_token, now)
        )
        if not accepted:
            raise PaymentRefused(
                Reason.STALE_FENCING_TOKEN,
                f"fencing token {fencing_token} is stale: a later run was accepted",
            )
        config = self._reconcile_config()
        async with self._uow() as uow:
            trade_nos = await uow.payments.stuck(
                created_before=now - config.after_ms, limit=config.batch_size
            )
        closed = completed = 0
        for trade_no in trade_nos:
            try:
                result = await self._reconcile_one(trade_no)
            except AppError as exc:
                result = "failed"
                logger.warning(
                    "reconciling a payment failed",
                    extra={"biz_trade_no": trade_no, "error": exc.message},
                )
            RECONCILIATION.labels(result).inc()
            closed += result == "closed"
            completed += result == "completed"
        logger.info(
            "payment reconciliation done",
            extra={
                "fencing_token": fencing_token,
                "checked": len(trade_nos),
                "closed": closed,
                "completed": completed,
            },
        )
        return ReconciliationResult(checked=len(trade_nos), closed=closed, completed=completed)

    async def _reconcile_one(self, trade_no: str) -> str:
        """``completed``, ``closed`` or ``unchanged``: what looking ``trade_no`` up did."""
        try:
            transaction = await self._provider.query(trade_no)
        except WechatPayOrderMissing:
            return "closed" if await self._fail_missing(trade_no) else "unchanged"
        if transaction.trade_state in UNPAID_STATES:
            try:
                await self._provider.close(trade_no)
            except WechatPayOrderPaid:
                # Paid between the query and the close: read it again and complete it.
                transaction = await self._provider.query(trade_no)
            else:
                transaction = Transaction(
                    transaction.mchid,
                    trade_no,
                    transaction.transaction_id,
                    "CLOSED",
                    transaction.total_fen,
                )
        status = status_of(transaction.trade_state)
        if status is None or not await self._apply(transaction, status):
            return "unchanged"
        return "closed" if status is PaymentStatus.FAILED else "completed"
