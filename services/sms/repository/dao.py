"""Send records in SQL (SQLAlchemy 2 async; SQLite and MySQL), and the unit of work.

Two tables: ``sms_send_records`` (one row per send; ``args`` and ``numbers`` as JSON text;
times as Unix milliseconds so both backends compare them the same way) and
``sms_send_record_numbers`` (one row per number of a send, to find sends by phone).

Claiming is one conditional ``UPDATE ... WHERE id = ? AND (status = 'waiting' AND due OR
status = 'sending' AND claim expired)`` whose row count says whether this worker won; writing
an outcome is conditional on still holding the claim (``claimed_by``), so a worker whose claim
was taken over cannot overwrite the new holder's result.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.sql import SessionDAO, SessionFactory, big_id, rowcount, service_metadata
from kit.sql import SqlUnitOfWork as BaseSqlUnitOfWork
from services.sms.domain import (
    ActiveRecords,
    DeliveryResult,
    NewSendRecord,
    RecordPage,
    RecordQuery,
    SendRecord,
    SendStatus,
)
from services.sms.sms_service import DuplicateIdempotencyKey, StoreUnavailable


class Base(DeclarativeBase):
    """Declarative base of the sms tables (created without MySQL table options)."""

    metadata = service_metadata()


class SendRecordRow(Base):
    """One send (see :class:`~services.sms.domain.SendRecord`)."""

    __tablename__ = "sms_send_records"
    __table_args__ = (
        UniqueConstraint("caller", "idempotency_key"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "claim_until"),
        Index(None, "caller", "id"),
        Index(None, "tpl_id", "id"),
        Index(None, "ctime"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(64))
    # NULL when the caller gave none: unique constraints ignore NULLs on both backends.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tpl_id: Mapped[str] = mapped_column(String(64))
    args: Mapped[str] = mapped_column(Text)
    numbers: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str] = mapped_column(String(96), default="")
    claim_until: Mapped[int] = mapped_column(BigInteger, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, default=0)
    expire_at: Mapped[int] = mapped_column(BigInteger, default=0)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class SendRecordNumberRow(Base):
    """A number a send went to."""

    __tablename__ = "sms_send_record_numbers"
    __table_args__ = (Index(None, "phone", "record_id"), Index(None, "record_id"))

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    record_id: Mapped[int] = mapped_column(BigInteger)
    phone: Mapped[str] = mapped_column(String(20))


def _to_domain(row: SendRecordRow) -> SendRecord:
    return SendRecord(
        id=row.id,
        caller=row.caller,
        tpl_id=row.tpl_id,
        args=tuple(json.loads(row.args)),
        numbers=tuple(json.loads(row.numbers)),
        idempotency_key=row.idempotency_key or "",
        status=SendStatus(row.status),
        provider=row.provider,
        attempts=row.attempts,
        last_error=row.last_error,
        latency_ms=row.latency_ms,
        claimed_by=row.claimed_by,
        claim_until_ms=row.claim_until,
        next_attempt_at_ms=row.next_attempt_at,
        expire_at_ms=row.expire_at,
        ctime_ms=row.ctime,
        utime_ms=row.utime,
    )


class SqlSendRecordRepository(SessionDAO):
    """The :class:`~services.sms.sms_service.SendRecordRepository` on one session."""

    async def add(self, record: NewSendRecord) -> int:
        """Insert the record and its numbers; a repeated idempotency key raises."""
        row = SendRecordRow(
            caller=record.caller,
            idempotency_key=record.idempotency_key or None,
            tpl_id=record.tpl_id,
            args=json.dumps(list(record.args), ensure_ascii=False),
            numbers=json.dumps(list(record.numbers)),
            status=SendStatus.SENDING.value,
            provider="",
            attempts=0,
            last_error="",
            latency_ms=0,
            claimed_by=record.claimed_by,
            claim_until=record.claim_until_ms,
            next_attempt_at=record.now_ms,
            expire_at=record.expire_at_ms,
            ctime=record.now_ms,
            utime=record.now_ms,
        )
        self._session.add(row)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise DuplicateIdempotencyKey(record.idempotency_key) from exc
        self._session.add_all(
            SendRecordNumberRow(record_id=row.id, phone=phone) for phone in record.numbers
        )
        await self._session.flush()
        return row.id

    async def get(self, record_id: int) -> SendRecord | None:
        """One record by id."""
        row = await self._session.get(SendRecordRow, record_id, populate_existing=True)
        return _to_domain(row) if row is not None else None

    async def get_by_idempotency_key(self, caller: str, key: str) -> SendRecord | None:
        """The record ``caller`` stored under ``key``."""
        row = await self._session.scalar(
            select(SendRecordRow).where(
                SendRecordRow.caller == caller, SendRecordRow.idempotency_key == key
            )
        )
        return _to_domain(row) if row is not None else None

    @staticmethod
    def _claimable(now_ms: int) -> Any:
        return or_(
            and_(
                SendRecordRow.status == SendStatus.WAITING.value,
                SendRecordRow.next_attempt_at <= now_ms,
            ),
            and_(
                SendRecordRow.status == SendStatus.SENDING.value,
                SendRecordRow.claim_until < now_ms,
            ),
        )

    async def due(self, now_ms: int, limit: int) -> list[int]:
        """Ids of claimable records, oldest first."""
        rows = await self._session.scalars(
            select(SendRecordRow.id)
            .where(self._claimable(now_ms))
            .order_by(SendRecordRow.id)
            .limit(limit)
        )
        return list(rows)

    async def claim(self, record_id: int, claimed_by: str, now_ms: int, until_ms: int) -> bool:
        """Take the record if it is still claimable; the row count decides the race."""
        result = await self._session.execute(
            update(SendRecordRow)
            .where(SendRecordRow.id == record_id, self._claimable(now_ms))
            .values(
                status=SendStatus.SENDING.value,
                claimed_by=claimed_by,
                claim_until=until_ms,
                utime=now_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def finish(self, record_id: int, claimed_by: str, result: DeliveryResult) -> bool:
        """Write the outcome while ``claimed_by`` holds the claim; release the claim."""
        values: dict[str, Any] = {
            "status": result.status.value,
            "provider": result.provider,
            "attempts": result.attempts,
            "last_error": result.last_error,
            "latency_ms": result.latency_ms,
            "next_attempt_at": result.next_attempt_at_ms,
            "claimed_by": "",
            "claim_until": 0,
            "utime": result.now_ms,
        }
        if result.status.terminal:
            values["args"] = "[]"
        outcome = await self._session.execute(
            update(SendRecordRow)
            .where(
                SendRecordRow.id == record_id,
                SendRecordRow.claimed_by == claimed_by,
                SendRecordRow.status == SendStatus.SENDING.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(outcome) == 1

    async def page(self, query: RecordQuery) -> RecordPage:
        """Records matching ``query``, newest first, ``limit`` per page."""
        statement = select(SendRecordRow)
        if query.cursor:
            statement = statement.where(SendRecordRow.id < query.cursor)
        if query.caller:
            statement = statement.where(SendRecordRow.caller == query.caller)
        if query.tpl_id:
            statement = statement.where(SendRecordRow.tpl_id == query.tpl_id)
        if query.status is not None:
            statement = statement.where(SendRecordRow.status == query.status.value)
        if query.from_ms:
            statement = statement.where(SendRecordRow.ctime >= query.from_ms)
        if query.to_ms:
            statement = statement.where(SendRecordRow.ctime < query.to_ms)
        if query.phone:
            statement = statement.where(
                SendRecordRow.id.in_(
                    select(SendRecordNumberRow.record_id).where(
                        SendRecordNumberRow.phone == query.phone
                    )
                )
            )
        rows = list(
            await self._session.scalars(
                statement.order_by(SendRecordRow.id.desc()).limit(query.limit + 1)
            )
        )
        more = len(rows) > query.limit
        records = [_to_domain(r) for r in rows[: query.limit]]
        return RecordPage(records, records[-1].id if more else 0)

    async def active(self) -> ActiveRecords:
        """Counts of ``waiting`` and ``sending`` records and the oldest one's ``ctime``, in
        one query."""
        statuses = [SendStatus.WAITING.value, SendStatus.SENDING.value]
        rows = await self._session.execute(
            select(SendRecordRow.status, func.count(), func.min(SendRecordRow.ctime))
            .where(SendRecordRow.status.in_(statuses))
            .group_by(SendRecordRow.status)
        )
        counts: dict[SendStatus, int] = {}
        oldest: int | None = None
        for status, count, first in rows:
            counts[SendStatus(status)] = int(count)
            oldest = int(first) if oldest is None else min(oldest, int(first))
        return ActiveRecords(counts, oldest)


class SqlUnitOfWork(BaseSqlUnitOfWork[SqlSendRecordRepository]):
    """One session and transaction; SQL failures surface as ``StoreUnavailable``."""

    def __init__(self, sessions: SessionFactory) -> None:
        super().__init__(sessions, SqlSendRecordRepository)

    @property
    def records(self) -> SqlSendRecordRepository:
        """The repository of this unit of work (only inside ``async with``)."""
        return self.repository

    def translate_block_error(self, exc: BaseException) -> BaseException | None:
        """Database and connection failures are :class:`StoreUnavailable`."""
        return _unavailable(exc)

    def translate_commit_error(self, exc: Exception) -> BaseException | None:
        """A failed commit is :class:`StoreUnavailable`."""
        return _unavailable(exc)


def _unavailable(exc: BaseException) -> StoreUnavailable | None:
    if isinstance(exc, SQLAlchemyError | OSError):
        return StoreUnavailable(type(exc).__name__)
    return None
