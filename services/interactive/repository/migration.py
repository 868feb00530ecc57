"""The interactive tables moved to another database with :mod:`kit.migrator`.

When a migration is configured (``migration_destination_url``), every unit of work is a
:class:`MigratingUnitOfWork`: it reads the migration's mode once, when it begins, and works in
one transaction on that mode's first side (reads included), through the same
:class:`~services.interactive.repository.CachedInteractiveRepository` and queries as without a
migration. Its DAO, :class:`DoubleWriteDAO`, names to the double write the primary keys of the
rows each statement changed; after the first side commits, those rows' images are copied to
the second side (a failure there never fails the caller: the validator finds the row and the
fixer repairs it). docs/interactive.md, "Migrating the tables".

The queries change rows by their natural keys (``(biz, biz_id)``, ``(uid, biz, biz_id)``),
so the DAO looks the ids up in the same transaction: after an insert or update, and before a
delete (``SELECT ... FOR UPDATE`` on MySQL, so that no concurrent insert slips in between).
In the ``*_only`` modes nothing is copied and no id is looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.migrator import DoubleWriter, DoubleWriteUnitOfWork, MigratedTable
from kit.sql import CachingUnitOfWork
from services.interactive.repository import CachedInteractiveRepository
from services.interactive.repository.cache import CountsCache
from services.interactive.repository.dao import (
    CountColumn,
    InteractiveDAO,
    InteractiveRow,
    UserCollectRow,
    UserLikeRow,
)

_interactives: Table = InteractiveRow.__table__  # type: ignore[assignment]
_likes: Table = UserLikeRow.__table__  # type: ignore[assignment]
_collects: Table = UserCollectRow.__table__  # type: ignore[assignment]

INTERACTIVES = MigratedTable(_interactives, updated_at="utime")
# A like row is inserted or deleted, never updated: its creation time is its update time.
USER_LIKES = MigratedTable(_likes, updated_at="ctime")
USER_COLLECTS = MigratedTable(_collects, updated_at="utime")
TABLES = (INTERACTIVES, USER_LIKES, USER_COLLECTS)
"""The tables the migration moves, all of the service's."""


class DoubleWriteDAO(InteractiveDAO):
    """:class:`InteractiveDAO` in a double-write unit of work: each write also records the
    ids of the rows it changed (module docstring)."""

    def __init__(self, uow: DoubleWriteUnitOfWork) -> None:
        super().__init__(uow.session)
        self._uow = uow
        self._copied = uow.mode.second is not None

    async def _touch(
        self, table: MigratedTable, condition: ColumnElement[bool], *, lock: bool = False
    ) -> None:
        """Record the ids of ``table``'s rows matching ``condition`` (when rows are copied)."""
        if not self._copied:
            return
        stmt = select(table.table.c.id).where(condition)
        if lock:
            stmt = stmt.with_for_update()
        for row_id in (await self._session.scalars(stmt)).all():
            self._uow.touch(table, row_id)

    async def add_counts(
        self, biz: str, deltas: Mapping[int, int], column: CountColumn, now_ms: int
    ) -> None:
        await super().add_counts(biz, deltas, column, now_ms)
        if deltas:
            await self._touch(INTERACTIVES, _object(_interactives, biz, list(deltas)))

    async def decrement(self, biz: str, biz_id: int, column: CountColumn, now_ms: int) -> None:
        await super().decrement(biz, biz_id, column, now_ms)
        await self._touch(INTERACTIVES, _object(_interactives, biz, [biz_id]))

    async def insert_like(self, uid: int, biz: str, biz_id: int, now_ms: int) -> bool:
        inserted = await super().insert_like(uid, biz, biz_id, now_ms)
        if inserted:
            await self._touch(USER_LIKES, _flag(_likes, uid, biz, biz_id))
        return inserted

    async def delete_like(self, uid: int, biz: str, biz_id: int) -> bool:
        await self._touch(USER_LIKES, _flag(_likes, uid, biz, biz_id), lock=True)
        return await super().delete_like(uid, biz, biz_id)

    async def insert_collect(self, uid: int, biz: str, biz_id: int, cid: int, now_ms: int) -> bool:
        inserted = await super().insert_collect(uid, biz, biz_id, cid, now_ms)
        # Inserted, or moved to ``cid``: changed either way.
        await self._touch(USER_COLLECTS, _flag(_collects, uid, biz, biz_id))
        return inserted

    async def delete_collect(self, uid: int, biz: str, biz_id: int) -> bool:
        await self._touch(USER_COLLECTS, _flag(_collects, uid, biz, biz_id), lock=True)
        return await super().delete_collect(uid, biz, biz_id)


def _object(table: Table, biz: str, biz_ids: list[int]) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = (table.c.biz == biz) & table.c.biz_id.in_(biz_ids)
    return condition


def _flag(table: Table, uid: int, biz: str, biz_id: int) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = (
        (table.c.uid == uid) & (table.c.biz == biz) & (table.c.biz_id == biz_id)
    )
    return condition


class MigratingUnitOfWork(CachingUnitOfWork[CachedInteractiveRepository, CountsCache]):
    """:class:`~services.interactive.repository.SqlUnitOfWork` over a double writer: one
    transaction on the first side of the mode read when it begins, copied to the second
    side after the commit.

    Args:
        writer: the migration's double writer (its sides, mode holder and tables).
        cache: the counts cache, adjusted after the commit as without a migration.
    """

    interactives = CachingUnitOfWork.repository

    def __init__(self, writer: DoubleWriter, cache: CountsCache) -> None:
        # The base only calls its factory to open the session: here, the double write's.
        super().__init__(self._first_side, cache)  # type: ignore[arg-type]
        self._writer = writer
        self._double: DoubleWriteUnitOfWork | None = None

    def _first_side(self) -> AsyncSession:
        """The session the unit of work runs in: the double write's, on the first side."""
        return self._opened().session

    def _opened(self) -> DoubleWriteUnitOfWork:
        if self._double is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._double

    def open_repository(self, session: AsyncSession) -> CachedInteractiveRepository:
        return CachedInteractiveRepository(DoubleWriteDAO(self._opened()), self.cache)

    async def __aenter__(self) -> MigratingUnitOfWork:
        # Waits at the migration's "switching" barrier, if it is up (kit.migrator.mode):
        # past its bound, ModeSwitching (UNAVAILABLE) reaches the caller, who may retry.
        double = self._writer.unit_of_work()
        await double.__aenter__()
        self._double = double
        try:
            await super().__aenter__()
        except BaseException as exc:
            # Not entered: __aexit__ will not run, so the double write's session (and its
            # place among the units in flight) is released here.
            self._double = None
            await double.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, _type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            await super().__aexit__(_type, exc, tb)
        finally:
            double, self._double = self._double, None
            if double is not None:
                # Rolled back and closed above already; this releases its own references.
                await double.__aexit__(_type, exc, tb)

    async def commit(self) -> None:
        """Commit the first side and copy the changed rows to the second (a failure of the
        copy is logged and counted by :mod:`kit.migrator`, never raised), then adjust the
        cache."""
        double = self._opened()
        repository = self.repository
        try:
            await double.commit()
        except Exception as exc:
            translated = self.translate_commit_error(exc)
            if translated is not None:
                raise translated from exc
            raise
        self._committed = True
        await self.after_commit(repository)
