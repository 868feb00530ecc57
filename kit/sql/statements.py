"""Portable upsert and insert-ignore for SQLite and MySQL/MariaDB.

SQLAlchemy spells both per dialect (``ON CONFLICT`` on SQLite, ``ON DUPLICATE KEY UPDATE`` /
``INSERT IGNORE`` on MySQL); these helpers pick the spelling from the session's bind, run
the statement and return the affected row count, so a DAO says what it means once.

Row counts: ``INSERT IGNORE`` / ``ON CONFLICT DO NOTHING`` affect 0 rows on a duplicate key,
which is how callers learn whether a row was really inserted (``ON DUPLICATE KEY UPDATE``
would count the matched row: SQLAlchemy's MySQL dialects set ``CLIENT_FOUND_ROWS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnCollection
from sqlalchemy.sql.dml import Insert

Values = Mapping[str, Any] | Sequence[Mapping[str, Any]]
Incoming = ColumnCollection[str, Any]
"""The columns of the row an upsert proposed (``excluded`` on SQLite, ``VALUES()`` on MySQL)."""
Changes = Mapping[str, Any] | Callable[[Incoming], Mapping[str, Any]]
"""What an upsert sets on conflict: fixed values/expressions, or built from the proposed row."""

_MYSQL = ("mysql", "mariadb")


def dialect_name(session: AsyncSession) -> str:
    """The SQL dialect ``session`` talks to (``"sqlite"``, ``"mysql"``, ``"mariadb"``)."""
    return session.get_bind().dialect.name


def rowcount(result: object) -> int:
    """The affected row count of an executed DML statement (0 when the driver gives none)."""
    return int(getattr(result, "rowcount", 0) or 0)


def upsert_statement(
    dialect: str, table: Any, values: Values, *, conflict: Sequence[str], changes: Changes
) -> Insert:
    """``INSERT values``; where a row with the same ``conflict`` key exists, apply ``changes``.

    ``conflict`` names the unique key (SQLite needs it; MySQL uses whichever unique key
    collided). ``changes`` may be a callable given the proposed row's columns, to write
    e.g. ``{"cnt": Table.cnt + incoming.cnt}`` for multi-row statements.
    """
    rows = values if isinstance(values, Mapping) else list(values)
    if dialect == "sqlite":
        lite = sqlite.insert(table).values(rows)
        update = _changes(changes, lite.excluded)
        return lite.on_conflict_do_update(index_elements=list(conflict), set_=update)
    if dialect in _MYSQL:
        my = mysql.insert(table).values(rows)
        return my.on_duplicate_key_update(_changes(changes, my.inserted))
    raise ValueError(f"no upsert for SQL dialect {dialect!r} (SQLite and MySQL/MariaDB only)")


def _changes(changes: Changes, incoming: Incoming) -> dict[str, Any]:
    update = dict(changes(incoming) if callable(changes) else changes)
    if not update:
        raise ValueError("an upsert needs changes; to keep existing rows use insert_ignore")
    return update


def insert_ignore_statement(dialect: str, table: Any, values: Values) -> Insert:
    """``INSERT values`` that skips rows whose unique key exists (0 rows affected for them)."""
    rows = values if isinstance(values, Mapping) else list(values)
    if dialect == "sqlite":
        return sqlite.insert(table).values(rows).on_conflict_do_nothing()
    if dialect in _MYSQL:
        return mysql.insert(table).values(rows).prefix_with("IGNORE")
    raise ValueError(
        f"no insert-ignore for SQL dialect {dialect!r} (SQLite and MySQL/MariaDB only)"
    )


async def upsert(
    session: AsyncSession,
    table: Any,
    values: Values,
    *,
    conflict: Sequence[str],
    changes: Changes,
) -> int:
    """Run :func:`upsert_statement` in ``session``; the affected row count."""
    stmt = upsert_statement(
        dialect_name(session), table, values, conflict=conflict, changes=changes
    )
    return rowcount(await session.execute(stmt))


async def insert_ignore(session: AsyncSession, table: Any, values: Values) -> int:
    """Run :func:`insert_ignore_statement` in ``session``; how many rows were inserted."""
    stmt = insert_ignore_statement(dialect_name(session), table, values)
    return rowcount(await session.execute(stmt))
