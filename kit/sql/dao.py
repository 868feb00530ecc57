"""The base of every DAO: queries on a session its unit of work owns.

A DAO flushes (so generated ids are known) but never commits: the unit of work that owns
the session decides. :class:`SessionDAO` holds the session and the operations every DAO
spells the same way (a row by primary key, insert a row, flush, portable upsert and
insert-ignore).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql.statements import Changes, Values, dialect_name, insert_ignore, upsert

RowT = TypeVar("RowT")


class SessionDAO:
    """Queries within the caller's session; flushes but never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @property
    def dialect(self) -> str:
        """The SQL dialect of the session (``"sqlite"``, ``"mysql"``, ``"mariadb"``)."""
        return dialect_name(self._session)

    async def get_row(
        self, row_type: type[RowT], key: object, *, for_update: bool = False
    ) -> RowT | None:
        """The ``row_type`` row whose (one-column) primary key is ``key``; ``for_update``
        locks it for the transaction (``SELECT ... FOR UPDATE`` on MySQL; SQLite has one
        writer at a time anyway)."""
        stmt = select(row_type).where(inspect(row_type).primary_key[0] == key)
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def insert(self, row: RowT) -> RowT:
        """Add ``row`` and flush, so its generated id is known (``IntegrityError`` on a
        taken unique key)."""
        self._session.add(row)
        await self._session.flush()
        return row

    async def flush(self) -> None:
        """Write pending changes of loaded rows."""
        await self._session.flush()

    async def upsert(
        self, table: Any, values: Values, *, conflict: Sequence[str], changes: Changes
    ) -> int:
        """:func:`kit.sql.upsert` in this session; the affected row count."""
        return await upsert(self._session, table, values, conflict=conflict, changes=changes)

    async def insert_ignore(self, table: Any, values: Values) -> int:
        """:func:`kit.sql.insert_ignore` in this session; how many rows were inserted."""
        return await insert_ignore(self._session, table, values)
