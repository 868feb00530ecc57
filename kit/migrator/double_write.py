"""Double write: every change of a migrated table goes to both databases.

**Mechanism: a unit of work that copies row images.** The caller works in a
:class:`DoubleWriteUnitOfWork`, which holds one transaction on the *first* side of the mode
it read when it began. Its writes go through :class:`TableWriter` (``insert``, ``update``,
``delete``, ``upsert``), or through any statement on :attr:`~DoubleWriteUnitOfWork.session`
followed by :meth:`~DoubleWriteUnitOfWork.touch` of the keys it changed. The unit of work
remembers every primary key written. At :meth:`~DoubleWriteUnitOfWork.commit` it reads,
inside the first side's transaction (which sees its own writes and holds their row locks),
the image of each of those rows: the whole row, or "absent" for a deleted one. It writes those
images to the *second* side in one transaction there
(:func:`~kit.migrator.tables.apply_images`: upsert by primary key, or delete), and then
commits the first side. The copy is made while the first side's transaction still holds the
rows' locks, so the next writer of a row waits for it: copies of one row land on the second
side in the order their transactions commit on the first.

Why images rather than replaying the statements: the primary key an auto-increment column
generated on the first side is part of the image, so the second side stores the row under
the same key without knowing which statement made it; a relative update (``cnt = cnt + 1``)
is copied as its result, so copying it again cannot count twice; and custom SQL needs no
parser, only the keys it touched. The cost is one ``SELECT`` by key per table per unit of
work, on rows the transaction has just locked.

**What it can and cannot guarantee.** There is no atomic commit across two databases (no
XA: MariaDB's is slow and unusual, SQLite has none). The second side commits first; then the
first. The copy may fail (after three tries when a concurrent copy aborted it: the caller is
*not* failed; the failure is logged, counted in ``webook_migrator_second_write_failures_total``
and left to the validator), the process may die between the two commits, the request may be
cancelled, or the first side's commit may fail after the copy's (the second side then holds
a change the first never made, which the validator reverts). The price of the order: a
first-side row lock is held for the copy's round trip too. So double write alone makes the
second side *nearly* right. **Validate and repair** closes the gap: the validator compares the sides
and publishes each difference; the fixer re-reads the first side's row when it repairs and
copies that image. Every repair is an idempotent copy of the authoritative row, so running
validation and repair again until a pass finds nothing converges, however the live writes
interleave (docs/migration.md).

Reads come from the first side: :attr:`~DoubleWriteUnitOfWork.session`.

**The barrier.** A unit of work gets its mode from :meth:`ModeHolder.begin
<kit.migrator.mode.ModeHolder.begin>`, counted in flight until it ends. In ``switching``
it waits there, up to :attr:`DoubleWriter.switch_wait_s`, then runs in the mode switched to
(or fails with :class:`~kit.migrator.mode.ModeSwitching`, UNAVAILABLE), so that no unit of
work of ``source_first`` overlaps one of ``destination_first`` (kit.migrator.mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from kit.migrator.metrics import SECOND_WRITE_FAILURES, declare_writes
from kit.migrator.mode import Mode, ModeHolder, Side
from kit.migrator.tables import Key, MigratedTable, Row, apply_images, read_images
from kit.sql import rowcount, upsert
from kit.sql.conflicts import backoff_delay, is_write_conflict
from kit.sql.statements import Changes, Values

logger = logging.getLogger(__name__)


# Tries of a second-side copy that a concurrent copy aborted (deadlock, lock wait).
SECOND_WRITE_ATTEMPTS = 3

Sessions = Callable[[], AsyncSession]
"""Where a side's sessions come from: a :data:`kit.sql.SessionFactory`, or a wrapper of one."""


class Sides:
    """The session factories of the two databases of a migration."""

    def __init__(self, source: Sessions, destination: Sessions) -> None:
        self.source = source
        self.destination = destination

    def of(self, side: Side) -> Sessions:
        """The sessions of ``side``."""
        return self.source if side is Side.SOURCE else self.destination


class DoubleWriter:
    """Makes the double-write units of work of one migration.

    Args:
        sides: the source and destination databases.
        mode: the migration's mode holder (read once per unit of work).
        tables: the tables the migration moves; a unit of work writes only these.
        switch_wait_s: how long a unit of work that begins in ``switching`` waits for the
            switch to end (a number, or a callable read at each wait: a live setting).
    """

    def __init__(
        self,
        sides: Sides,
        mode: ModeHolder,
        tables: Sequence[MigratedTable],
        *,
        switch_wait_s: float | Callable[[], float] = 10.0,
    ) -> None:
        if not tables:
            raise ValueError("a migration moves at least one table")
        if not callable(switch_wait_s) and switch_wait_s < 0:
            raise ValueError("switch_wait_s must be >= 0")
        self.sides = sides
        self.mode = mode
        self.tables = {table.name: table for table in tables}
        self._switch_wait_s = switch_wait_s
        declare_writes(self.tables, [side.value for side in Side])

    @property
    def switch_wait_s(self) -> float:
        """How long a unit of work waits at the ``switching`` barrier now."""
        wait = self._switch_wait_s
        return max(float(wait() if callable(wait) else wait), 0.0)

    def unit_of_work(self) -> DoubleWriteUnitOfWork:
        """A new unit of work (``async with`` it; it reads the mode when it begins)."""
        return DoubleWriteUnitOfWork(self)


class TableWriter:
    """Writes to one table in a unit of work's first-side transaction, recording the keys."""

    def __init__(self, uow: DoubleWriteUnitOfWork, table: MigratedTable) -> None:
        self._uow = uow
        self._table = table

    @property
    def table(self) -> MigratedTable:
        """The table written."""
        return self._table

    async def insert(self, values: Mapping[str, Any]) -> Key:
        """Insert one row; its primary key (generated by the first side if not given)."""
        result: CursorResult[Any] = await self._uow.session.execute(  # type: ignore[assignment]
            insert(self._table.table).values(dict(values))
        )
        key = tuple(result.inserted_primary_key or ())
        if len(key) != len(self._table.key_columns) or any(value is None for value in key):
            raise RuntimeError(f"no primary key generated for a row of {self._table.name!r}")
        self._uow.touch(self._table, key)
        return key

    async def update(self, key: object, values: Mapping[str, Any]) -> int:
        """Update the row with primary key ``key`` (values may be SQL expressions, such as
        ``table.c.cnt + 1``); the number of rows matched."""
        row_key = self._table.key_from(key)
        stmt = (
            update(self._table.table)
            .where(self._table.key_condition([row_key]))
            .values(dict(values))
        )
        count = rowcount(await self._uow.session.execute(stmt))
        self._uow.touch(self._table, row_key)
        return count

    async def delete(self, key: object) -> int:
        """Delete the row with primary key ``key``; the number of rows deleted."""
        row_key = self._table.key_from(key)
        stmt = delete(self._table.table).where(self._table.key_condition([row_key]))
        count = rowcount(await self._uow.session.execute(stmt))
        self._uow.touch(self._table, row_key)
        return count

    async def upsert(self, values: Values, *, conflict: Sequence[str], changes: Changes) -> int:
        """:func:`kit.sql.upsert` of rows that carry their primary key; the affected count.

        The rows' keys are recorded, so each ``values`` row must hold every key column.
        """
        rows = [values] if isinstance(values, Mapping) else list(values)
        for row in rows:
            missing = [c.name for c in self._table.key_columns if c.name not in row]
            if missing:
                raise ValueError(f"an upsert of {self._table.name!r} needs the key {missing}")
        count = await upsert(
            self._uow.session, self._table.table, values, conflict=conflict, changes=changes
        )
        for row in rows:
            self._uow.touch(self._table, self._table.key_of(row))
        return count

    async def get(self, key: object, *, for_update: bool = False) -> Row | None:
        """The row with primary key ``key`` as the first side has it in this transaction."""
        row_key = self._table.key_from(key)
        stmt = select(self._table.table).where(self._table.key_condition([row_key]))
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._uow.session.execute(stmt)).mappings().first()
        return None if row is None else self._table.image(row)


class DoubleWriteUnitOfWork:
    """One transaction on the first side, copied to the second after it commits.

    ``async with uow:`` reads the mode once (waiting at the ``switching`` barrier, counted in
    flight until the block ends) and opens the first side's session;
    :meth:`commit` commits it, then writes the touched rows' images to the second side
    (module docstring). Leaving the block without a commit rolls back and copies nothing.
    A second-side failure is logged and counted, never raised: the caller's change is
    committed. It may raise ``asyncio.CancelledError`` only if the caller is cancelled.
    """

    def __init__(self, writer: DoubleWriter) -> None:
        self._writer = writer
        self._mode: Mode | None = None
        self._session: AsyncSession | None = None
        self._touched: dict[str, dict[Key, None]] = {}
        self._images: dict[str, dict[Key, Row | None]] = {}
        self._committed = False

    @property
    def mode(self) -> Mode:
        """The mode this unit of work runs in (read once, when it began)."""
        if self._mode is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._mode

    @property
    def session(self) -> AsyncSession:
        """The first side's session: reads, and writes followed by :meth:`touch`."""
        if self._session is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._session

    def rows(self, table: MigratedTable | str) -> TableWriter:
        """The writer of ``table`` (a table of the migration) in this unit of work."""
        name = table if isinstance(table, str) else table.name
        migrated = self._writer.tables.get(name)
        if migrated is None:
            raise KeyError(f"table {name!r} is not part of this migration")
        return TableWriter(self, migrated)

    def touch(self, table: MigratedTable | str, key: object) -> None:
        """Record that the row ``key`` of ``table`` was changed by a statement of the caller
        (rows changed without it are not copied: the validator would find them)."""
        migrated = self.rows(table).table
        self._touched.setdefault(migrated.name, {})[migrated.key_from(key)] = None

    async def __aenter__(self) -> Self:
        holder = self._writer.mode
        self._mode = await holder.begin(self._writer.switch_wait_s)
        try:
            self._session = self._writer.sides.of(self._mode.first)()
        except BaseException:
            holder.end()
            raise
        self._touched = {}
        self._images = {}
        self._committed = False
        return self

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if not self._committed:
                await session.rollback()
        finally:
            try:
                await session.close()
            finally:
                self._writer.mode.end()

    async def commit(self) -> None:
        """Copy the touched rows to the second side, then commit on the first side."""
        session = self.session
        second = self.mode.second
        if second is not None and self._touched:
            await session.flush()
            for name, keys in self._touched.items():
                table = self._writer.tables[name]
                found = await read_images(session, table, keys)
                self._images[name] = {key: found.get(key) for key in keys}
            # Copied while the first side's transaction still holds the rows' locks: the
            # next writer of a row waits for this copy, so copies land in commit order.
            await self._write_second(second)
        await session.commit()
        self._committed = True

    async def _write_second(self, side: Side) -> None:
        images, self._images = self._images, {}
        attempt = 1
        while True:
            try:
                async with self._writer.sides.of(side)() as session:
                    for name, rows in images.items():
                        await apply_images(session, self._writer.tables[name], rows)
                    await session.commit()
                return
            except asyncio.CancelledError:
                self._second_failed(side, images, "cancelled")
                raise
            except Exception as exc:
                # Concurrent copies of other rows can deadlock on the second side's gap
                # locks; running the copy again is safe (images are absolute, and the rows
                # are still locked on the first side).
                if is_write_conflict(exc) and attempt < SECOND_WRITE_ATTEMPTS:
                    await asyncio.sleep(backoff_delay(attempt))
                    attempt += 1
                    continue
                self._second_failed(side, images, repr(exc))
                return

    def _second_failed(
        self, side: Side, images: dict[str, dict[Key, Row | None]], error: str
    ) -> None:
        for name, rows in images.items():
            SECOND_WRITE_FAILURES.labels(name, side.value).inc()
            logger.warning(
                "double write: second side failed; left to the validator",
                extra={
                    "migration": self._writer.mode.migration,
                    "table": name,
                    "side": side.value,
                    "mode": self.mode.value,
                    "keys": [list(key) for key in list(rows)[:20]],
                    "rows": len(rows),
                    "error": error,
                },
            )
