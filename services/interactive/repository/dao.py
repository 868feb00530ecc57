"""SQL schema and queries of the interactive service (SQLAlchemy 2.0, async).

- ``interactives``: one row of counters per object, unique on ``(biz, biz_id)``;
- ``user_likes``: one row per like, unique on ``(uid, biz, biz_id)``;
- ``user_collects``: one row per collected object, unique on ``(uid, biz, biz_id)``, with the
  collection ``cid`` (index ``(uid, cid)`` for listing a collection).

Counter changes are single statements that add to the stored value (never read-modify-write),
written per dialect so that they work on SQLite and MySQL/MariaDB: ``INSERT ... ON CONFLICT
DO UPDATE SET read_cnt = interactives.read_cnt + excluded.read_cnt`` on SQLite,
``INSERT ... ON DUPLICATE KEY UPDATE read_cnt = read_cnt + VALUES(read_cnt)`` on MySQL.
A batch of reads over many objects is one multi-row statement. Flag rows are inserted
"if absent" (``ON CONFLICT DO NOTHING`` / ``INSERT IGNORE``) and deleted; the affected row
count says whether the flag changed, which is what decides whether a counter moves.

:class:`InteractiveDAO` works on the session it is given and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
CountColumn = Literal["read_cnt", "like_cnt", "collect_cnt"]
# MySQL ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT; SQLite reports "database is locked".
_MYSQL_CONFLICTS = frozenset({1213, 1205})


def exact_string(length: int) -> TypeEngine[str]:
    """``VARCHAR(length)``, compared byte for byte on MySQL/MariaDB too."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def big_id() -> TypeEngine[int]:
    """``BIGINT`` primary key type that still autoincrements on SQLite (only INTEGER does)."""
    return BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the interactive service's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InteractiveRow(Base):
    """The counters of one object."""

    __tablename__ = "interactives"
    __table_args__ = (
        UniqueConstraint("biz", "biz_id", name="uq_interactives_biz_biz_id"),
        MYSQL_TABLE_OPTIONS,
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
    __table_args__ = (
        UniqueConstraint("uid", "biz", "biz_id", name="uq_user_likes_uid_biz_biz_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(exact_string(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)


class UserCollectRow(Base):
    """An object in one of a user's collections."""

    __tablename__ = "user_collects"
    __table_args__ = (
        UniqueConstraint("uid", "biz", "biz_id", name="uq_user_collects_uid_biz_biz_id"),
        Index("ix_user_collects_uid_cid", "uid", "cid"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    cid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(exact_string(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


def is_write_conflict(exc: DBAPIError) -> bool:
    """Whether ``exc`` is a deadlock, lock timeout or busy database (worth a retry)."""
    args = getattr(exc.orig, "args", ())
    if args and args[0] in _MYSQL_CONFLICTS:
        return True
    return "database is locked" in str(exc.orig)


def _add_to_counts(dialect: str, rows: list[dict[str, Any]], column: CountColumn) -> Insert:
    if dialect == "sqlite":
        stmt = sqlite.insert(InteractiveRow).values(rows)
        return stmt.on_conflict_do_update(
            index_elements=["biz", "biz_id"],
            set_={
                column: getattr(InteractiveRow, column) + getattr(stmt.excluded, column),
                "utime": stmt.excluded.utime,
            },
        )
    if dialect in ("mysql", "mariadb"):
        my_stmt = mysql.insert(InteractiveRow).values(rows)
        return my_stmt.on_duplicate_key_update(
            {
                column: getattr(InteractiveRow, column) + getattr(my_stmt.inserted, column),
                "utime": my_stmt.inserted.utime,
            }
        )
    raise NotImplementedError(f"no upsert for SQL dialect {dialect!r}")


def _insert_if_absent(dialect: str, table: type[Base], values: dict[str, Any]) -> Insert:
    if dialect == "sqlite":
        return sqlite.insert(table).values(values).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        # IGNORE: a duplicate key affects 0 rows, where ON DUPLICATE KEY UPDATE would count
        # the matched row (SQLAlchemy's MySQL dialects set CLIENT_FOUND_ROWS).
        return mysql.insert(table).values(values).prefix_with("IGNORE")
    raise NotImplementedError(f"no insert-if-absent for SQL dialect {dialect!r}")


def _affected(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class InteractiveDAO:
    """Queries within the caller's session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @property
    def _dialect(self) -> str:
        return self._session.get_bind().dialect.name

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
        await self._session.execute(_add_to_counts(self._dialect, rows, column))

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
        result = await self._session.execute(_insert_if_absent(self._dialect, UserLikeRow, values))
        return _affected(result) == 1

    async def delete_like(self, uid: int, biz: str, biz_id: int) -> bool:
        """Delete the like row; ``False`` if there was none."""
        result = await self._session.execute(
            delete(UserLikeRow).where(
                UserLikeRow.uid == uid, UserLikeRow.biz == biz, UserLikeRow.biz_id == biz_id
            )
        )
        return _affected(result) == 1

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
        result = await self._session.execute(
            _insert_if_absent(self._dialect, UserCollectRow, values)
        )
        if _affected(result) == 1:
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
        return _affected(result) == 1

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
