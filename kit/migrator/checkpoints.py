"""Where each validator is: one row per (table, direction, validation) in a small table.

A validator saves its position after every batch whose differences were published, and a
new validator (after a crash, a deploy, a cancelled task) starts from it:

- **full**: ``last_key``, the primary key (JSON array) up to which the pass compared; a
  finished pass clears it and counts ``passes``, so the next pass starts from the beginning;
- **incremental**: ``last_time`` and ``last_key``, the update time and key of the last row
  checked; the next scan starts at ``last_time`` minus the overlap margin.

The table (``migrator_checkpoints``) lives on the **destination** database: the migration
writes nothing of its own to the source, which other code may still own (its migrations and
drift checks), and the destination is new and dropped or cleaned with the migration.
:meth:`CheckpointStore.ensure_table` creates it (``CREATE TABLE IF NOT EXISTS``): it is the
migration's bookkeeping, not part of any service's schema, so no service revision owns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import MYSQL_TABLE_OPTIONS, service_metadata, upsert

CHECKPOINT_TABLE = "migrator_checkpoints"

_metadata: MetaData = service_metadata()
_TABLE_OPTIONS: dict[str, Any] = dict(MYSQL_TABLE_OPTIONS)

checkpoints_table = Table(
    CHECKPOINT_TABLE,
    _metadata,
    Column("table_name", String(128), primary_key=True),
    Column("direction", String(32), primary_key=True),
    Column("validation", String(16), primary_key=True),
    Column("last_key", Text, nullable=True),
    Column("last_time", BigInteger, nullable=True),
    Column("passes", BigInteger, nullable=False, default=0),
    Column("updated_ms", BigInteger, nullable=False),
    **_TABLE_OPTIONS,
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A validator's saved position.

    Attributes:
        last_key: the key (JSON array) of the last row checked; ``None``: from the start.
        last_time: incremental only: the update time of that row.
        passes: how many passes finished (full validation).
        updated_ms: when the checkpoint was saved (Unix milliseconds; 0: never).
    """

    last_key: str | None = None
    last_time: int | None = None
    passes: int = 0
    updated_ms: int = 0


class CheckpointStore:
    """Reads and saves checkpoints in ``migrator_checkpoints`` of one database.

    Args:
        sessions: the database holding the table (the migration's destination).
    """

    def __init__(self, sessions: Callable[[], AsyncSession]) -> None:
        self._sessions = sessions

    async def ensure_table(self) -> None:
        """Create the checkpoint table if it is missing."""
        async with self._sessions() as session:
            connection = await session.connection()
            await connection.run_sync(lambda sync: checkpoints_table.create(sync, checkfirst=True))
            await session.commit()

    async def load(self, table: str, direction: str, validation: str) -> Checkpoint:
        """The saved checkpoint (an empty one when there is none)."""
        stmt = select(checkpoints_table).where(
            checkpoints_table.c.table_name == table,
            checkpoints_table.c.direction == direction,
            checkpoints_table.c.validation == validation,
        )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).mappings().first()
        if row is None:
            return Checkpoint()
        return Checkpoint(row["last_key"], row["last_time"], row["passes"], row["updated_ms"])

    async def save(
        self, table: str, direction: str, validation: str, checkpoint: Checkpoint
    ) -> Checkpoint:
        """Save ``checkpoint`` (stamped with the current time); the saved value."""
        saved = Checkpoint(
            checkpoint.last_key,
            checkpoint.last_time,
            checkpoint.passes,
            int(time.time() * 1000),
        )
        values = {
            "table_name": table,
            "direction": direction,
            "validation": validation,
            "last_key": saved.last_key,
            "last_time": saved.last_time,
            "passes": saved.passes,
            "updated_ms": saved.updated_ms,
        }
        async with self._sessions() as session:
            await upsert(
                session,
                checkpoints_table,
                values,
                conflict=["table_name", "direction", "validation"],
                changes=lambda incoming: {
                    name: incoming[name]
                    for name in ("last_key", "last_time", "passes", "updated_ms")
                },
            )
            await session.commit()
        return saved
