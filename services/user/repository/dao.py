"""SQL schema and queries of the ``users`` table (SQLAlchemy 2.0, async).

:class:`UserDAO` works on the session it is given and never commits: the unit of work that
owns the session decides. Identity columns (email, phone, WeChat ids) use a binary collation
on MySQL/MariaDB so that uniqueness and lookups are exact, as they are on SQLite (a ``_ci``
collation would make WeChat open ids differing only in case collide).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import BigInteger, Date, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, exact_string, service_metadata, table_args


class Base(DeclarativeBase):
    """Declarative base of the user service's tables."""

    metadata = service_metadata()


class UserRow(Base):
    """One row of ``users``; ``None`` identities are unset (NULLs never collide)."""

    __tablename__ = "users"
    __table_args__ = table_args()

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


UserOutboxRow = outbox_model(Base, "user_outbox")
"""``UserChanged`` events recorded with the transaction that caused them (:mod:`kit.outbox`)."""


class UserDAO(SessionDAO):
    """Queries on ``users`` within the caller's session; flushes but never commits."""

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
