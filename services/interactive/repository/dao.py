"""SQL schema and queries of the interactive service (SQLAlchemy 2.0, async).

- ``interactives``: one row of counters per object, unique on ``(biz, biz_id)``;
- ``user_likes``: one row per like, unique on ``(uid, biz, biz_id)``;
- ``user_collects``: one row per collected object, unique on ``(uid, biz, biz_id)``, with the
  collection ``cid`` (index ``(uid, cid)`` for listing a collection).

Counter changes are single statements that add to the stored value (never read-modify-write),
spelled per dialect by :func:`kit.sql.upsert` (SQLite and MySQL/MariaDB): ``INSERT ... ON CONFLICT
DO UPDATE SET read_cnt = interactives.read_cnt + excluded.read_cnt`` on SQLite,
``INSERT ... ON DUPLICATE KEY UPDATE read_cnt = read_cnt + VALUES(read_cnt)`` on MySQL.
A batch of reads over many objects is one multi-row statement. Flag rows are inserted
"if absent" (:func:`kit.sql.insert_ignore`) and deleted; the affected row
count says whether the flag changed, which is what decides whether a counter moves.

:class:`InteractiveDAO` works on the session it is given and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from sqlalchemy import BigInteger, Index, UniqueConstraint, delete, exists, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.sql import (
    SessionDAO,
    big_id,
    exact_string,
    rowcount,
    service_metadata,
    table_args,
)
from kit.sql.statements import Incoming

CountColumn = Literal["read_cnt", "like_cnt", "collect_cnt"]


class Base(DeclarativeBase):
    """Declarative base of the interactive service's tables."""

    metadata = service_metadata()


class InteractiveRow(Base):
    """The counters of one object."""

    __tablename__ = "interactives"
    __table_args__ = table_args(
        UniqueConstraint("biz", "biz_id", name="uq_interactives_biz_biz_id"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    biz: Mapped[str] = mapped_column(exact_string(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    read_cnt: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    like_cnt: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    collect_cnt: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class UserLikeRow(Base):
    """A user's like of an object."""

    __tablename__ = "user_likes"
    __table_args__ = table_args(
        UniqueConstraint("uid", "biz", "biz_id", name="uq_user_likes_uid_biz_biz_id"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(exact_string(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)


class UserCollectRow(Base):
    """An object in one of a user's collections."""

    __tablename__ = "user_collects"
    __table_args__ = table_args(
        UniqueConstraint("uid", "biz", "biz_id", name="uq_user_collects_uid_biz_biz_id"),
        Index("ix_user_collects_uid_cid", "uid", "cid"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    cid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(exact_string(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class InteractiveDAO(SessionDAO):
    """Queries within the caller's session; never commits."""

    async def add_counts(
        self, biz: str, deltas: Mapping[int, int], column: CountColumn, now_ms: int
    ) -> None:
        """Add ``deltas[biz_id]`` (positive) to ``column`` of each object, in one statement."""
        if not deltas:
            return
        # Rows in key order, so concurrent batches lock them in the same order.
        rows = [
            {
                "biz": biz,
                "biz_id": biz_id,
                "read_cnt": 0,
                "like_cnt": 0,
                "collect_cnt": 0,
                column: delta,
                "ctime": now_ms,
                "utime": now_ms,
            }
            for biz_id, delta in sorted(deltas.items())
        ]
        counter = getattr(InteractiveRow, column)

        def add(incoming: Incoming) -> dict[str, object]:
            return {column: counter + incoming[column], "utime": incoming["utime"]}

        await self.upsert(InteractiveRow, rows, conflict=("biz", "biz_id"), changes=add)

    async def decrement(self, biz: str, biz_id: int, column: CountColumn, now_ms: int) -> None:
        """Take one from ``column`` of the object (never below zero)."""
        counter = getattr(InteractiveRow, column)
        await self._session.execute(
            update(InteractiveRow)
            .where(InteractiveRow.biz == biz, InteractiveRow.biz_id == biz_id, counter > 0)
            .values({column: counter - 1, "utime": now_ms})
        )

    async def insert_like(self, uid: int, biz: str, biz_id: int, now_ms: int) -> bool:
        """Insert the like row; ``False`` if it existed."""
        values = {"uid": uid, "biz": biz, "biz_id": biz_id, "ctime": now_ms}
        return await self.insert_ignore(UserLikeRow, values) == 1

    async def delete_like(self, uid: int, biz: str, biz_id: int) -> bool:
        """Delete the like row; ``False`` if there was none."""
        result = await self._session.execute(
            delete(UserLikeRow).where(
                UserLikeRow.uid == uid, UserLikeRow.biz == biz, UserLikeRow.biz_id == biz_id
            )
        )
        return rowcount(result) == 1

    async def insert_collect(self, uid: int, biz: str, biz_id: int, cid: int, now_ms: int) -> bool:
        """Insert the collect row; if it existed, move it to ``cid`` and return ``False``."""
        values = {
            "uid": uid,
            "cid": cid,
            "biz": biz,
            "biz_id": biz_id,
            "ctime": now_ms,
            "utime": now_ms,
        }
        if await self.insert_ignore(UserCollectRow, values) == 1:
            return True
        await self._session.execute(
            update(UserCollectRow)
            .where(
                UserCollectRow.uid == uid,
                UserCollectRow.biz == biz,
                UserCollectRow.biz_id == biz_id,
            )
            .values(cid=cid, utime=now_ms)
        )
        return False

    async def delete_collect(self, uid: int, biz: str, biz_id: int) -> bool:
        """Delete the collect row; ``False`` if there was none."""
        result = await self._session.execute(
            delete(UserCollectRow).where(
                UserCollectRow.uid == uid,
                UserCollectRow.biz == biz,
                UserCollectRow.biz_id == biz_id,
            )
        )
        return rowcount(result) == 1

    async def get_counts(self, biz: str, biz_ids: Sequence[int]) -> Sequence[InteractiveRow]:
        """The counters rows of the objects among ``biz_ids`` that have one."""
        if not biz_ids:
            return []
        result = await self._session.scalars(
            select(InteractiveRow).where(
                InteractiveRow.biz == biz, InteractiveRow.biz_id.in_(biz_ids)
            )
        )
        return result.all()

    async def get_flags(self, uid: int, biz: str, biz_id: int) -> tuple[bool, bool]:
        """Whether the like row and the collect row exist, in one query."""
        liked = exists().where(
            UserLikeRow.uid == uid, UserLikeRow.biz == biz, UserLikeRow.biz_id == biz_id
        )
        collected = exists().where(
            UserCollectRow.uid == uid,
            UserCollectRow.biz == biz,
            UserCollectRow.biz_id == biz_id,
        )
        row = (await self._session.execute(select(liked, collected))).one()
        return bool(row[0]), bool(row[1])
