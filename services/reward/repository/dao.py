"""SQL schema and queries of the reward service (SQLAlchemy 2.0, async).

Tables:

- ``rewards``: one row per PreReward, ``status`` 1 = INIT, 2 = PAYED, 3 = FAILED
  (:class:`services.reward.domain.RewardStatus`), ``code_url`` empty until the payment was
  opened. Rows are read by primary key only.
- ``reward_outbox``: ``RewardPaid`` events written in the transaction that made a reward
  PAYED (:mod:`kit.outbox`).

Exactly one transition: a status change is ``UPDATE ... WHERE id = :rid AND status = 1``
(INIT), and only the statement whose rowcount is 1 records the event. Both databases
serialise these on the row (InnoDB row lock, SQLite's single writer), so of two racing
identical changes (the consumer and a repairing GetReward) exactly one sees rowcount 1.

:class:`RewardDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, SmallInteger, String, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, rowcount, service_metadata, table_args
from services.reward.domain import NewReward, RewardStatus

BIZ_LENGTH = 32
CODE_URL_LENGTH = 512


class Base(DeclarativeBase):
    """Declarative base of the reward service's tables."""

    metadata = service_metadata()


class RewardRow(Base):
    """One row of ``rewards``."""

    __tablename__ = "rewards"
    __table_args__ = table_args()

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    biz: Mapped[str] = mapped_column(String(BIZ_LENGTH))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    target_uid: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(SmallInteger)
    code_url: Mapped[str] = mapped_column(String(CODE_URL_LENGTH), default="", server_default="")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


RewardOutboxRow = outbox_model(Base, "reward_outbox")
"""Events recorded with the transaction that caused them (see :mod:`kit.outbox`)."""


class RewardDAO(SessionDAO):
    """Queries on the reward tables within the caller's session; never commits."""

    async def create(self, new: NewReward, now: int) -> RewardRow:
        """Insert an INIT reward; the row with its id."""
        return await self.insert(
            RewardRow(
                biz=new.biz,
                biz_id=new.biz_id,
                uid=new.uid,
                target_uid=new.target_uid,
                amount_fen=new.amount_fen,
                status=int(RewardStatus.INIT),
                code_url="",
                ctime=now,
                utime=now,
            )
        )

    async def get(self, rid: int) -> RewardRow | None:
        """Reward ``rid``'s row as the database has it now (also after an UPDATE of this
        transaction that bypassed the session's copy)."""
        return await self._session.scalar(
            select(RewardRow).where(RewardRow.id == rid).execution_options(populate_existing=True)
        )

    async def set_code_url(self, rid: int, code_url: str, now: int) -> None:
        """Record the payment's code URL."""
        await self._session.execute(
            sql_update(RewardRow).where(RewardRow.id == rid).values(code_url=code_url, utime=now)
        )

    async def leave_init(self, rid: int, status: RewardStatus, now: int) -> bool:
        """Move reward ``rid`` from INIT to ``status``; whether it was INIT."""
        result = await self._session.execute(
            sql_update(RewardRow)
            .where(RewardRow.id == rid, RewardRow.status == int(RewardStatus.INIT))
            .values(status=int(status), utime=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1
