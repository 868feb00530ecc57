"""SQL schema and queries of the payment service (SQLAlchemy 2.0, async).

Tables:

- ``payments``: one row per order, unique on ``biz_trade_no`` (the caller's business key,
  WeChat Pay's ``out_trade_no``, compared byte for byte). Money is ``amount_fen`` BIGINT.
  ``status`` holds :class:`~services.payment.domain.PaymentStatus`; ``paid_ms`` is when the
  success was recorded (``SumSucceeded`` sums by it, index ``(paid_ms)``). Index
  ``(status, ctime)`` finds the orders the reconciliation looks up.
- ``payment_outbox``: ``PaymentStatusChanged`` events written in the transaction of the
  change (:mod:`kit.outbox`).
- ``payment_job_fences``: the highest fencing token accepted per job (the reconciliation).

A status moves with ``UPDATE ... WHERE biz_trade_no = ? AND status IN (<predecessors>)``:
both databases serialise it on the row (InnoDB row lock and a current read; SQLite's single
writer), so of concurrent identical moves exactly one sees rowcount 1 and records an event.

:class:`PaymentDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import BigInteger, Index, SmallInteger, String, UniqueConstraint, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, exact_string, rowcount, service_metadata, table_args

TRADE_NO_LENGTH = 32
CODE_URL_LENGTH = 255
TXN_ID_LENGTH = 64
DESCRIPTION_LENGTH = 127
JOB_LENGTH = 64


class Base(DeclarativeBase):
    """Declarative base of the payment service's tables."""

    metadata = service_metadata()


class PaymentRow(Base):
    """One row of ``payments``."""

    __tablename__ = "payments"
    __table_args__ = table_args(
        UniqueConstraint("biz_trade_no", name="uq_payments_biz_trade_no"),
        Index("ix_payments_status_ctime", "status", "ctime"),
        Index("ix_payments_paid_ms", "paid_ms"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    biz_trade_no: Mapped[str] = mapped_column(exact_string(TRADE_NO_LENGTH))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(DESCRIPTION_LENGTH))
    status: Mapped[int] = mapped_column(SmallInteger)
    code_url: Mapped[str] = mapped_column(String(CODE_URL_LENGTH), default="", server_default="")
    txn_id: Mapped[str] = mapped_column(String(TXN_ID_LENGTH), default="", server_default="")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)
    paid_ms: Mapped[int | None] = mapped_column(BigInteger)


PaymentOutboxRow = outbox_model(Base, "payment_outbox")
"""Events recorded with the transaction that caused them (see :mod:`kit.outbox`)."""


class JobFenceRow(Base):
    """One row of ``payment_job_fences``."""

    __tablename__ = "payment_job_fences"
    __table_args__ = table_args()

    job: Mapped[str] = mapped_column(String(JOB_LENGTH), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class PaymentDAO(SessionDAO):
    """Queries on the payment tables within the caller's session; never commits."""

    async def insert_order(
        self, biz_trade_no: str, amount_fen: int, description: str, status: int, now: int
    ) -> bool:
        """Insert a new order unless ``biz_trade_no`` exists; whether a row was inserted."""
        values = {
            "biz_trade_no": biz_trade_no,
            "amount_fen": amount_fen,
            "description": description,
            "status": status,
            "code_url": "",
            "txn_id": "",
            "ctime": now,
            "utime": now,
            "paid_ms": None,
        }
        return await self.insert_ignore(PaymentRow, values) == 1

    async def by_trade_no(self, biz_trade_no: str) -> PaymentRow | None:
        """The order ``biz_trade_no``."""
        return await self._session.scalar(
            select(PaymentRow).where(PaymentRow.biz_trade_no == biz_trade_no)
        )

    async def set_code_url(self, biz_trade_no: str, code_url: str, now: int) -> bool:
        """Record the prepay's ``code_url`` unless one is recorded; whether it was."""
        result = await self._session.execute(
            sql_update(PaymentRow)
            .where(PaymentRow.biz_trade_no == biz_trade_no, PaymentRow.code_url == "")
            .values(code_url=code_url, utime=now)
        )
        return rowcount(result) == 1

    async def move(
        self,
        biz_trade_no: str,
        *,
        from_statuses: Collection[int],
        to_status: int,
        txn_id: str,
        now: int,
        paid: bool,
    ) -> bool:
        """Move the order to ``to_status`` if it is in one of ``from_statuses``; whether it
        was. ``txn_id`` replaces the recorded one when not empty; ``paid`` records ``now`` as
        the success time."""
        values: dict[str, object] = {"status": to_status, "utime": now}
        if txn_id:
            values["txn_id"] = txn_id[:TXN_ID_LENGTH]
        if paid:
            values["paid_ms"] = now
        result = await self._session.execute(
            sql_update(PaymentRow)
            .where(
                PaymentRow.biz_trade_no == biz_trade_no,
                PaymentRow.status.in_(sorted(from_statuses)),
            )
            .values(**values)
        )
        return rowcount(result) == 1

    async def stuck(self, status: int, *, created_before: int, limit: int) -> Sequence[str]:
        """Trade numbers of orders in ``status`` created before ``created_before``, oldest
        first."""
        rows = await self._session.scalars(
            select(PaymentRow.biz_trade_no)
            .where(PaymentRow.status == status, PaymentRow.ctime < created_before)
            .order_by(PaymentRow.ctime, PaymentRow.id)
            .limit(limit)
        )
        return rows.all()

    async def succeeded(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """``(sum of amount_fen, count)`` of orders paid in ``[start_ms, end_ms)``."""
        row = (
            await self._session.execute(
                select(func.coalesce(func.sum(PaymentRow.amount_fen), 0), func.count()).where(
                    PaymentRow.paid_ms >= start_ms, PaymentRow.paid_ms < end_ms
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    async def accept_token(self, job: str, token: int, now: int) -> bool:
        """Record ``token`` as ``job``'s highest unless a higher one is; whether accepted
        (the same token again is: a retried call of the same run)."""
        if await self.insert_ignore(JobFenceRow, {"job": job, "token": token, "utime": now}):
            return True
        result = await self._session.execute(
            sql_update(JobFenceRow)
            .where(JobFenceRow.job == job, JobFenceRow.token <= token)
            .values(token=token, utime=now)
        )
        return rowcount(result) == 1
