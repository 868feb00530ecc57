"""A migrated table, and the row images copied between its two sides.

Both the double write and the fixer copy **row images**: the whole row as one side holds it
(every column, read by primary key), written to the other side with the same primary key,
or the row deleted there when the image is "absent". An image is absolute, not a replayed
statement: copying it twice, or copying a row changed by ``cnt = cnt + 1``, gives the same
result, so every copy is idempotent.

Writing an image (:func:`apply_images`) upserts it by primary key. The base side enforces
the table's unique constraints, so when the image was read, no other row of the base side
had the same unique values: a target row with a different primary key holding them is stale
and is deleted first (it is re-created, with its own key, if the base side still has it: a
validation finds it missing). Without that, an upsert would collide on the secondary key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, and_, delete, false, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import UniqueConstraint

from kit.sql import dialect_name, insert_ignore_statement, upsert_statement

Key = tuple[Any, ...]
"""A row's primary key: the values of the key columns, in key order."""
Row = dict[str, Any]
"""A row image: column name → value."""

# Rows read per statement when images are read or written by key.
_KEYS_PER_STATEMENT = 500


@dataclass(frozen=True)
class MigratedTable:
    """A table moved by a migration: its SQLAlchemy ``Table`` and its update-time column.

    Attributes:
        table: the table (the same definition on both sides).
        updated_at: the column holding the row's last update time in milliseconds
            (``utime``), for incremental validation; ``None``: full validation only.
    """

    table: Table
    updated_at: str | None = None
    _key: tuple[Column[Any], ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = tuple(self.table.primary_key.columns)
        if not key:
            raise ValueError(f"table {self.table.name!r} has no primary key")
        if self.updated_at is not None and self.updated_at not in self.table.c:
            raise ValueError(f"table {self.table.name!r} has no column {self.updated_at!r}")
        object.__setattr__(self, "_key", key)
        # Computed once: iterating the table's columns builds a list each time, which cost
        # the validator more per row than comparing it (docs/performance.md).
        object.__setattr__(self, "_names", tuple(column.name for column in self.table.columns))

    @property
    def name(self) -> str:
        """The table's name (the same on both sides)."""
        return self.table.name

    @property
    def key_columns(self) -> tuple[Column[Any], ...]:
        """The primary key's columns, in key order."""
        return self._key

    @property
    def updated_column(self) -> Column[Any]:
        """The update-time column (``ValueError`` for a table without one)."""
        if self.updated_at is None:
            raise ValueError(f"table {self.name!r} has no update-time column")
        return self.table.c[self.updated_at]

    def key_of(self, row: Mapping[Any, Any]) -> Key:
        """The primary key of ``row``."""
        return tuple(row[column.name] for column in self._key)

    def key_from(self, value: object) -> Key:
        """A key given as a scalar (one-column keys), a sequence or a mapping."""
        if isinstance(value, Mapping):
            return self.key_of(value)
        if isinstance(value, list | tuple):
            key = tuple(value)
        else:
            key = (value,)
        if len(key) != len(self._key):
            raise ValueError(f"table {self.name!r} keys have {len(self._key)} values: {value!r}")
        return key

    def encode_key(self, key: Key) -> str:
        """``key`` as the JSON array the difference events carry."""
        return json.dumps(list(key), separators=(",", ":"))

    def decode_key(self, text: str) -> Key:
        """The key an event carries (``ValueError`` when it is not a key of this table)."""
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(f"a key is a JSON array, not {text!r}")
        return self.key_from(value)

    def key_condition(self, keys: Sequence[Key]) -> ColumnElement[bool]:
        """``WHERE`` the primary key is one of ``keys``."""
        if not keys:
            return false()
        if len(self._key) == 1:
            return self._key[0].in_([key[0] for key in keys])
        condition: ColumnElement[bool] = tuple_(*self._key).in_([tuple(key) for key in keys])
        return condition

    def after(self, columns: Sequence[Column[Any]], values: Sequence[Any]) -> ColumnElement[bool]:
        """``WHERE (columns) > (values)``, as a plain comparison for one column (indexes)."""
        condition: ColumnElement[bool]
        if len(columns) == 1:
            condition = columns[0] > values[0]
        else:
            condition = tuple_(*columns) > tuple_(*values)
        return condition

    def image(self, row: Mapping[Any, Any]) -> Row:
        """The row's image: every column of the table, by name."""
        return {name: row[name] for name in self._names}

    def images(self, rows: Iterable[Sequence[Any]]) -> list[Row]:
        """The images of rows selected as ``select(table)`` (values in the table's column
        order), without building a mapping per row first."""
        names = self._names
        return [dict(zip(names, row, strict=True)) for row in rows]


async def read_images(
    session: AsyncSession, table: MigratedTable, keys: Iterable[Key], *, for_update: bool = False
) -> dict[Key, Row]:
    """The rows of ``keys`` that exist, by key (``for_update`` locks them on MySQL)."""
    wanted = list(dict.fromkeys(keys))
    found: dict[Key, Row] = {}
    for start in range(0, len(wanted), _KEYS_PER_STATEMENT):
        chunk = wanted[start : start + _KEYS_PER_STATEMENT]
        stmt = select(table.table).where(table.key_condition(chunk))
        if for_update:
            stmt = stmt.with_for_update()
        for row in (await session.execute(stmt)).mappings():
            image = table.image(row)
            found[table.key_of(image)] = image
    return found


def _unique_column_sets(table: Table) -> list[tuple[Column[Any], ...]]:
    """The column sets of the table's unique constraints and unique indexes, key excluded."""
    key = set(table.primary_key.columns)
    sets: list[tuple[Column[Any], ...]] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            sets.append(tuple(constraint.columns))
    for index in table.indexes:
        if index.unique:
            sets.append(tuple(c for c in index.columns if isinstance(c, Column)))
    return [columns for columns in sets if columns and set(columns) != key]


async def apply_images(
    session: AsyncSession, table: MigratedTable, images: Mapping[Key, Row | None]
) -> tuple[int, int]:
    """Make the target's rows of ``images`` what they say, in the caller's transaction:
    upsert each image by primary key, delete each key whose image is ``None``.

    Target rows with another key but the same unique values as an image are deleted first
    (module docstring). Returns (rows upserted, keys deleted).
    """
    present = {key: image for key, image in images.items() if image is not None}
    absent = [key for key, image in images.items() if image is None]
    deleted = 0
    for start in range(0, len(absent), _KEYS_PER_STATEMENT):
        chunk = absent[start : start + _KEYS_PER_STATEMENT]
        await session.execute(delete(table.table).where(table.key_condition(chunk)))
        deleted += len(chunk)
    if not present:
        return 0, deleted
    await _delete_unique_holders(session, table, present)
    dialect = dialect_name(session)
    key_names = [column.name for column in table.key_columns]
    others = [column.name for column in table.table.columns if column.name not in key_names]
    rows = list(present.values())
    for start in range(0, len(rows), _KEYS_PER_STATEMENT):
        images_chunk = rows[start : start + _KEYS_PER_STATEMENT]
        if others:
            stmt = upsert_statement(
                dialect,
                table.table,
                images_chunk,
                conflict=key_names,
                changes=lambda incoming: {name: incoming[name] for name in others},
            )
        else:
            stmt = insert_ignore_statement(dialect, table.table, images_chunk)
        await session.execute(stmt)
    return len(rows), deleted


async def _delete_unique_holders(
    session: AsyncSession, table: MigratedTable, images: Mapping[Key, Row]
) -> None:
    """Delete target rows that hold an image's unique values under another primary key."""
    unique_sets = _unique_column_sets(table.table)
    if not unique_sets:
        return
    conditions: list[ColumnElement[bool]] = []
    for key, image in images.items():
        other_key = ~table.key_condition([key])
        for columns in unique_sets:
            values = [image[column.name] for column in columns]
            if any(value is None for value in values):
                continue  # NULLs never collide
            same = and_(*(column == value for column, value in zip(columns, values, strict=True)))
            conditions.append(and_(same, other_key))
    for start in range(0, len(conditions), _KEYS_PER_STATEMENT):
        chunk = conditions[start : start + _KEYS_PER_STATEMENT]
        await session.execute(delete(table.table).where(or_(*chunk)))
