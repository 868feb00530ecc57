"""Helpers of the migrator tests: the test table, a destination that fails a share of its
commits (a wrapper around real sessions), a recording sink, and reads of both sides."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, String, Table, UniqueConstraint, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.migrator import CheckpointStore, Difference, MigratedTable, Sessions, Sides
from kit.migrator.tables import Key, Row
from kit.sql import MYSQL_TABLE_OPTIONS, big_id, exact_string, service_metadata

metadata = service_metadata()
_OPTIONS: dict[str, Any] = dict(MYSQL_TABLE_OPTIONS)

notes = Table(
    "migrator_notes",
    metadata,
    Column("id", big_id(), primary_key=True, autoincrement=True),
    Column("slug", exact_string(64), nullable=False),
    Column("body", String(255), nullable=False, default=""),
    Column("cnt", BigInteger, nullable=False, default=0),
    Column("utime", BigInteger, nullable=False),
    UniqueConstraint("slug"),
    **_OPTIONS,
)
NOTES = MigratedTable(notes, updated_at="utime")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Pair:
    """The two databases of a test migration."""

    backend: str
    sides: Sides
    checkpoints: CheckpointStore


class FlakySessions:
    """Real sessions of a database whose commit fails for every ``every``-th session made
    (a destination that is sometimes unreachable)."""

    def __init__(self, sessions: Sessions, every: int) -> None:
        self._sessions = sessions
        self._every = every
        self.made = 0
        self.injected = 0

    def __call__(self) -> AsyncSession:
        session = self._sessions()
        self.made += 1
        if self._every > 0 and self.made % self._every == 0:

            async def failing_commit() -> None:
                self.injected += 1
                raise OperationalError("COMMIT", {}, ConnectionError("destination unreachable"))

            setattr(session, "commit", failing_commit)  # noqa: B010 (a method of this instance)
        return session


@dataclass
class RecordingSink:
    """A difference sink keeping what it was given."""

    published: list[Difference] = field(default_factory=list)

    async def publish(self, differences: Sequence[Difference]) -> None:
        self.published.extend(differences)

    def found(self) -> set[tuple[str, str]]:
        return {(d.key, d.kind.value) for d in self.published}


async def rows_of(sessions: Sessions, table: MigratedTable = NOTES) -> dict[Key, Row]:
    """Every row of ``table`` on one side, by key."""
    async with sessions() as session:
        result = await session.execute(select(table.table))
        return {table.key_of(row): table.image(row) for row in result.mappings()}


async def insert_rows(sessions: Sessions, rows: Sequence[Row]) -> None:
    async with sessions() as session:
        await session.execute(notes.insert(), list(rows))
        await session.commit()


def note(id_: int, *, body: str = "", cnt: int = 0, utime: int = 1_000) -> Row:
    return {"id": id_, "slug": f"note-{id_}", "body": body, "cnt": cnt, "utime": utime}


def key_text(id_: int) -> str:
    return f"[{id_}]"
