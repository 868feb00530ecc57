"""SQL schema and queries of the account service (SQLAlchemy 2.0, async).

Tables:

- ``accounts``: one row per account, primary key ``(uid, type)`` (the platform is uid 0,
  type SYSTEM), with its ``balance`` in fen;
- ``account_activities``: the ledger, one row per credit, unique on ``(biz_key, account)``:
  the constraint that makes a credit idempotent. Index ``(account, id)`` serves an account's
  newest rows; ``(at_ms)`` the reconciliation's sum over a day;
- ``account_fencing``: the highest fencing token accepted per job;
- ``account_reconciliations``: each day's last reconciliation result.

A credit first inserts the platform's ledger row, ``(biz_key, 0)``, with an insert that
ignores a duplicate key: its row count says whether this transaction is the first to credit
the business key, whatever author the event names. Both databases serialise that insert on
the unique key (InnoDB makes a concurrent copy wait for the first transaction's outcome;
SQLite has one writer), so of ten concurrent copies exactly one inserts, and only that one
writes the author's row and the balances.

:class:`AccountDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Index, SmallInteger, UniqueConstraint, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.sql import SessionDAO, big_id, exact_string, rowcount, service_metadata, table_args


class Base(DeclarativeBase):
    """Declarative base of the account service's tables."""

    metadata = service_metadata()


class AccountRow(Base):
    """One row of ``accounts``."""

    __tablename__ = "accounts"
    __table_args__ = table_args()

    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class ActivityRow(Base):
    """One row of ``account_activities`` (the ledger)."""

    __tablename__ = "account_activities"
    __table_args__ = table_args(
        UniqueConstraint("biz_key", "account", name="uq_account_activities_biz_key_account"),
        Index("ix_account_activities_account", "account", "id"),
        Index("ix_account_activities_at_ms", "at_ms"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    biz_key: Mapped[str] = mapped_column(exact_string(64))
    account: Mapped[int] = mapped_column(BigInteger)
    account_type: Mapped[int] = mapped_column(SmallInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[int] = mapped_column(SmallInteger)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)


class FencingRow(Base):
    """One row of ``account_fencing``."""

    __tablename__ = "account_fencing"
    __table_args__ = table_args()

    job: Mapped[str] = mapped_column(exact_string(64), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class ReconciliationRow(Base):
    """One row of ``account_reconciliations``."""

    __tablename__ = "account_reconciliations"
    __table_args__ = table_args()

    day_start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    credited_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    difference_fen: Mapped[int] = mapped_column(BigInteger)
    fencing_token: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class AccountDAO(SessionDAO):
    """Queries on the account tables within the caller's session; never commits."""

    async def insert_activity(
        self,
        *,
        biz_key: str,
        account: int,
        account_type: int,
        amount: int,
        type: int,
        at_ms: int,
        now: int,
    ) -> bool:
        """Insert a ledger row unless ``(biz_key, account)`` has one; whether it did."""
        values = {
            "biz_key": biz_key,
            "account": account,
            "account_type": account_type,
            "amount": amount,
            "type": type,
            "at_ms": at_ms,
            "ctime": now,
        }
        return await self.insert_ignore(ActivityRow, values) == 1

    async def add_to_balance(self, uid: int, account_type: int, amount: int, *, now: int) -> None:
        """Add ``amount`` to the account's balance, creating the account (upsert)."""
        values = {"uid": uid, "type": account_type, "balance": amount, "ctime": now, "utime": now}
        changes = {"balance": AccountRow.balance + amount, "utime": now}
        await self.upsert(AccountRow, values, conflict=("uid", "type"), changes=changes)

    async def balance(self, uid: int, account_type: int) -> int:
        """The account's balance (0 when it has none)."""
        balance = await self._session.scalar(
            select(AccountRow.balance).where(AccountRow.uid == uid, AccountRow.type == account_type)
        )
        return int(balance or 0)

    async def recent(self, account: int, limit: int) -> Sequence[ActivityRow]:
        """The account's newest ledger rows, newest first."""
        stmt = (
            select(ActivityRow)
            .where(ActivityRow.account == account)
            .order_by(ActivityRow.id.desc())
            .limit(limit)
        )
        return (await self._session.scalars(stmt)).all()

    async def sum_activities(self, types: Sequence[int], start_ms: int, end_ms: int) -> int:
        """The sum of the ledger rows of ``types`` whose ``at_ms`` is in ``[start, end)``."""
        total = await self._session.scalar(
            select(func.coalesce(func.sum(ActivityRow.amount), 0)).where(
                ActivityRow.type.in_(types),
                ActivityRow.at_ms >= start_ms,
                ActivityRow.at_ms < end_ms,
            )
        )
        return int(total or 0)

    async def accept_token(self, job: str, token: int, *, now: int) -> int:
        """Record ``token`` as ``job``'s highest unless a higher one is; the highest
        recorded afterwards (``token`` itself when accepted). Locks the job's row."""
        if await self._raise_token(job, token, now):
            return token
        if await self.insert_ignore(FencingRow, {"job": job, "token": token, "utime": now}):
            return token
        # Another run inserted the job's first row meanwhile: compare with it.
        if await self._raise_token(job, token, now):
            return token
        highest = await self._session.scalar(select(FencingRow.token).where(FencingRow.job == job))
        return int(highest or 0)

    async def _raise_token(self, job: str, token: int, now: int) -> bool:
        raised = await self._session.execute(
            sql_update(FencingRow)
            .where(FencingRow.job == job, FencingRow.token <= token)
            .values(token=token, utime=now)
        )
        return rowcount(raised) == 1

    async def save_reconciliation(
        self, day_start_ms: int, *, credited: int, paid: int, token: int, now: int
    ) -> None:
        """Record the day's result (replacing an earlier run's)."""
        values = {
            "day_start_ms": day_start_ms,
            "credited_fen": credited,
            "paid_fen": paid,
            "difference_fen": paid - credited,
            "fencing_token": token,
            "utime": now,
        }
        changes = {key: value for key, value in values.items() if key != "day_start_ms"}
        await self.upsert(ReconciliationRow, values, conflict=("day_start_ms",), changes=changes)

    async def reconciliation(self, day_start_ms: int) -> ReconciliationRow | None:
        """The day's recorded result, if any."""
        return await self._session.get(ReconciliationRow, day_start_ms)
