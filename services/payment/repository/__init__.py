"""Storage adapter of the payment service: SQL, with the events in the same transaction.

:class:`SqlUnitOfWork` implements :class:`services.payment.service.UnitOfWork`: one session
and transaction per use case, with a :class:`SqlPaymentRepository` and the
``PaymentStatusChanged`` writer bound to it (the ``payment_outbox`` rows commit with the
change or not at all).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import SessionFactory
from kit.sql import SqlUnitOfWork as BaseUnitOfWork
from services.payment.domain import Payment, PaymentStatus
from services.payment.events import OUTBOX_TOPICS, PaymentEvents
from services.payment.repository.dao import PaymentDAO, PaymentOutboxRow, PaymentRow

__all__ = ["SqlPaymentRepository", "SqlUnitOfWork", "payment_from_row", "payment_outbox"]


def payment_outbox() -> Outbox:
    """The outbox of the payment service's events (``payment_outbox``)."""
    return Outbox(PaymentOutboxRow, topics=OUTBOX_TOPICS)


def payment_from_row(row: PaymentRow) -> Payment:
    """The domain order stored in ``row``."""
    return Payment(
        biz_trade_no=row.biz_trade_no,
        amount_fen=row.amount_fen,
        description=row.description,
        status=PaymentStatus(row.status),
        code_url=row.code_url,
        txn_id=row.txn_id,
        ctime_ms=row.ctime,
        utime_ms=row.utime,
        paid_ms=row.paid_ms or 0,
    )


class SqlPaymentRepository:
    """Orders and fencing tokens in one session."""

    def __init__(self, dao: PaymentDAO) -> None:
        self._dao = dao

    async def create(self, biz_trade_no: str, amount_fen: int, description: str, now: int) -> bool:
        """Insert an INIT order unless the number exists; whether it was inserted."""
        return await self._dao.insert_order(
            biz_trade_no, amount_fen, description, int(PaymentStatus.INIT), now
        )

    async def get(self, biz_trade_no: str) -> Payment | None:
        """The order ``biz_trade_no``."""
        row = await self._dao.by_trade_no(biz_trade_no)
        return payment_from_row(row) if row is not None else None

    async def set_code_url(self, biz_trade_no: str, code_url: str, now: int) -> bool:
        """Record the prepay's answer unless one is; whether it was."""
        return await self._dao.set_code_url(biz_trade_no, code_url, now)

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
        return await self._dao.move(
            biz_trade_no,
            from_statuses=[int(s) for s in from_statuses],
            to_status=int(to_status),
            txn_id=txn_id,
            now=now,
            paid=to_status is PaymentStatus.SUCCESS,
        )

    async def stuck(self, *, created_before: int, limit: int) -> Sequence[str]:
        """INIT orders created before ``created_before``, oldest first."""
        return await self._dao.stuck(
            int(PaymentStatus.INIT), created_before=created_before, limit=limit
        )

    async def succeeded(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """Sum and count of the orders paid in the window."""
        return await self._dao.succeeded(start_ms, end_ms)

    async def accept_token(self, job: str, token: int, now: int) -> bool:
        """Record ``job``'s fencing token unless a higher one was accepted."""
        return await self._dao.accept_token(job, token, now)


class SqlUnitOfWork(BaseUnitOfWork[SqlPaymentRepository]):
    """One SQL transaction with the repository and the outbox-bound events."""

    def __init__(self, sessions: SessionFactory, outbox: Outbox) -> None:
        super().__init__(sessions)
        self._outbox = outbox
        self._events: PaymentEvents | None = None

    def open_repository(self, session: AsyncSession) -> SqlPaymentRepository:
        self._events = PaymentEvents(self._outbox.bound(session))
        return SqlPaymentRepository(PaymentDAO(session))

    @property
    def payments(self) -> SqlPaymentRepository:
        """The repository bound to this transaction."""
        return self.repository

    @property
    def events(self) -> PaymentEvents:
        """``PaymentStatusChanged``, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events
