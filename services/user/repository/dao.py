"""SQL schema and queries of the ``users`` table (SQLAlchemy 2.0, async).

:class:`UserDAO` works on the session it is given and never commits: the unit of work that
owns the session decides. Identity columns (email, phone, WeChat ids) use a binary collation
on MySQL/MariaDB so that uniqueness and lookups are exact, as they are on SQLite (a ``_ci``
collation would make WeChat open ids differing only in case collide).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import BigInteger, Date, Integer, MetaData, String, select
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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
# MySQL error 1062 ER_DUP_ENTRY; SQLite reports "UNIQUE constraint failed".
_MYSQL_DUPLICATE_ENTRY = 1062


def exact_string(length: int) -> TypeEngine[str]:
    """``VARCHAR(length)``, compared byte for byte on MySQL/MariaDB too."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def big_id() -> TypeEngine[int]:
    """``BIGINT`` primary key type that still autoincrements on SQLite (only INTEGER does)."""
    return BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the user service's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    """One row of ``users``; ``None`` identities are unset (NULLs never collide)."""

    __tablename__ = "users"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    email: Mapped[str | None] = mapped_column(exact_string(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(exact_string(32), unique=True)
    wechat_open_id: Mapped[str | None] = mapped_column(exact_string(128), unique=True)
    wechat_union_id: Mapped[str | None] = mapped_column(exact_string(128))
    nickname: Mapped[str] = mapped_column(String(64), default="", server_default="")
    birthday: Mapped[date | None] = mapped_column(Date)
    about_me: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether ``exc`` reports a duplicate unique key (rather than, say, a NOT NULL breach)."""
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and args[0] == _MYSQL_DUPLICATE_ENTRY:
        return True
    return "UNIQUE constraint failed" in str(orig)


class UserDAO:
    """Queries on ``users`` within the caller's session; flushes but never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert(self, row: UserRow) -> UserRow:
        """Insert ``row`` and flush, so its id is known (IntegrityError on a taken key)."""
        self._session.add(row)
        await self._session.flush()
        return row

    async def get(self, user_id: int) -> UserRow | None:
        """The row with ``user_id``, or ``None``."""
        return await self._session.get(UserRow, user_id)

    async def find_many(self, user_ids: Sequence[int]) -> Sequence[UserRow]:
        """The rows whose ids are in ``user_ids`` (any order)."""
        if not user_ids:
            return []
        result = await self._session.scalars(select(UserRow).where(UserRow.id.in_(user_ids)))
        return result.all()

    async def find_by_email(self, email: str) -> UserRow | None:
        """The row with this exact email, or ``None``."""
        return await self._session.scalar(select(UserRow).where(UserRow.email == email))

    async def find_by_phone(self, phone: str) -> UserRow | None:
        """The row with this exact phone, or ``None``."""
        return await self._session.scalar(select(UserRow).where(UserRow.phone == phone))

    async def find_by_wechat_open_id(self, open_id: str) -> UserRow | None:
        """The row with this exact WeChat open id, or ``None``."""
        return await self._session.scalar(select(UserRow).where(UserRow.wechat_open_id == open_id))

    async def list_after(self, after_id: int, limit: int) -> Sequence[UserRow]:
        """Up to ``limit`` rows with ids greater than ``after_id``, by id (primary key scan)."""
        result = await self._session.scalars(
            select(UserRow).where(UserRow.id > after_id).order_by(UserRow.id).limit(limit)
        )
        return result.all()

    async def update_profile(
        self,
        user_id: int,
        *,
        nickname: str,
        birthday: date | None,
        about_me: str,
        utime: int,
    ) -> UserRow | None:
        """Set the non-sensitive fields of ``user_id`` and flush; ``None`` if no such row."""
        row = await self._session.get(UserRow, user_id)
        if row is None:
            return None
        row.nickname = nickname
        row.birthday = birthday
        row.about_me = about_me
        row.utime = utime
        await self._session.flush()
        return row
