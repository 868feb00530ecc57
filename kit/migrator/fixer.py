"""The fixer: repairs the target of each difference event from the base side, as it is now.

A :class:`Fixer` consumes the validator's difference events (a
:class:`~kit.events.BatchConsumer` of ``webook.migrator.v1.Difference``). For each row it
**reads the base side again at repair time** and never uses what the event says about the
row (it says nothing but the key: the row may have changed since the comparison):

- the row is on the base side: its image is upserted on the target, same primary key;
- it is not: the target's row is deleted.

**Idempotent**: a repair copies the base's current row, so applying an event twice, or an
old event after a newer one, leaves the target equal to the base as of the last repair.
Duplicate deliveries (the consumer is at-least-once) cost a redundant copy.

**Safe with live writes.** The base row is read ``SELECT ... FOR UPDATE`` (MySQL/MariaDB;
``lock_base``) and the lock is held until the target's write committed, so a writer of the
base row waits for the repair and its own copy (a double write, made while it holds the row's
lock: :mod:`kit.migrator.double_write`) lands after it; and a writer that locked the row
first made its copy before the repair could read the row. What remains is a double write
whose copy failed, or whose first-side commit failed after its copy: the row was written
during this round, the next validation finds it and the next repair copies the latest image.
Each round can only leave rows that were written during it, and a row stops being written
eventually, so validating and repairing until a pass finds nothing converges
(docs/migration.md, "Why validate and repair converges"). On SQLite there is no ``FOR
UPDATE`` (one writer at a time): a double write may commit between the repair's read and
its write, and the repair then puts back the older image; the same argument holds.

**One bad message never stops it**: an event that names no known table, no valid key or no
side is logged, counted (``outcome="skipped"``) and skipped; a repair that still fails after
``attempts`` tries is logged, counted (``outcome="failed"``) and skipped too (the next
validation publishes it again). The consumer's batch is never retried for them, so no
partition is blocked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    protobuf_decoder,
)
from kit.migrator.double_write import Sides
from kit.migrator.metrics import FIX_OUTCOMES, FIXES, declare_fixes
from kit.migrator.mode import Side
from kit.migrator.tables import Key, MigratedTable, apply_images, read_images
from kit.migrator.validator import TRACER_NAME, difference_topic, side_from_proto
from kit.sql import backoff_delay
from webook.migrator.v1 import migrator_pb2

logger = logging.getLogger(__name__)

_UPSERTED, _DELETED, _SKIPPED, _FAILED = FIX_OUTCOMES


@dataclass(frozen=True, slots=True)
class _Repair:
    table: MigratedTable
    base: Side
    key: Key


class Fixer:
    """Repairs targets from difference events (module docstring).

    Args:
        tables: the tables it may repair; events for other tables are skipped.
        sides: the two databases (their primaries).
        lock_base: hold the base rows ``FOR UPDATE`` until the target committed.
        attempts: tries per repair (a group of rows first together, then one by one).
        tracer_provider: for the ``migrator.fix`` spans (the global one by default).
    """

    def __init__(
        self,
        tables: Sequence[MigratedTable],
        sides: Sides,
        *,
        lock_base: bool = True,
        attempts: int = 3,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._tables = {table.name: table for table in tables}
        declare_fixes(self._tables)
        self._sides = sides
        self._lock_base = lock_base
        self._attempts = attempts
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    def handler(self) -> TopicHandler[migrator_pb2.Difference]:
        """The consumer's handler of the difference topic."""
        return TopicHandler(protobuf_decoder(migrator_pb2.Difference), self.handle)

    def consumer(self, config: ConsumerConfig, *, topic: str | None = None) -> BatchConsumer:
        """A consumer of the difference topic (the declared one by default) applying this
        fixer; a runner component (``start`` / ``stop``)."""
        return BatchConsumer(config, {topic or difference_topic(): self.handler()})

    async def handle(self, batch: Sequence[ConsumedEvent[migrator_pb2.Difference]]) -> None:
        """Repair every row the batch names (each once); never raises for a bad event or a
        failed repair."""
        repairs: dict[tuple[str, Side, Key], _Repair] = {}
        for event in batch:
            repair = self._parse(event)
            if repair is not None:
                repairs[(repair.table.name, repair.base, repair.key)] = repair
        groups: dict[tuple[str, Side], list[_Repair]] = {}
        for repair in repairs.values():
            groups.setdefault((repair.table.name, repair.base), []).append(repair)
        for (name, base), group in groups.items():
            await self._repair_group(self._tables[name], base, [r.key for r in group])

    async def repair(
        self, table: MigratedTable, base: Side, keys: Sequence[Key]
    ) -> tuple[int, int]:
        """Make the target's rows of ``keys`` what the base side holds now, in one
        transaction per side; (rows upserted, rows deleted). Raises on failure."""
        with self._tracer.start_as_current_span(
            "migrator.fix",
            attributes={
                "migrator.table": table.name,
                "migrator.base": base.value,
                "migrator.rows": len(keys),
            },
        ) as span:
            async with self._sides.of(base)() as base_session:
                found = await read_images(base_session, table, keys, for_update=self._lock_base)
                images = {key: found.get(key) for key in keys}
                async with self._sides.of(base.other)() as target_session:
                    upserted, deleted = await apply_images(target_session, table, images)
                    await target_session.commit()
                # Ends the base transaction: releases the locks taken by the read.
                await base_session.rollback()
            span.set_attribute("migrator.upserted", upserted)
            span.set_attribute("migrator.deleted", deleted)
            return upserted, deleted

    async def _repair_group(self, table: MigratedTable, base: Side, keys: list[Key]) -> None:
        if await self._attempt(table, base, keys, alone=len(keys) == 1):
            return
        # One row may be what fails the group: the others must not wait for it.
        for key in keys:
            await self._attempt(table, base, [key], alone=True)

    async def _attempt(
        self, table: MigratedTable, base: Side, keys: list[Key], *, alone: bool
    ) -> bool:
        """Try the repair ``attempts`` times; counts the outcome when it succeeds, or when
        it fails for a single row."""
        for attempt in range(1, self._attempts + 1):
            try:
                upserted, deleted = await self.repair(table, base, keys)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt < self._attempts:
                    await asyncio.sleep(backoff_delay(attempt, 0.05))
                    continue
                if alone:
                    FIXES.labels(table.name, _FAILED).inc(len(keys))
                    logger.warning(
                        "repair failed; skipped (the next validation finds the row again)",
                        extra={
                            "table": table.name,
                            "base": base.value,
                            "keys": [table.encode_key(key) for key in keys],
                            "error": repr(exc),
                        },
                    )
                return False
            FIXES.labels(table.name, _UPSERTED).inc(upserted)
            FIXES.labels(table.name, _DELETED).inc(deleted)
            logger.info(
                "rows repaired",
                extra={
                    "table": table.name,
                    "base": base.value,
                    "upserted": upserted,
                    "deleted": deleted,
                },
            )
            return True
        return False

    def _parse(self, event: ConsumedEvent[migrator_pb2.Difference]) -> _Repair | None:
        """The repair an event asks for; ``None`` (logged, counted) for a bad event."""
        payload = event.payload
        table = self._tables.get(payload.table)
        try:
            if table is None:
                raise ValueError(f"unknown table {payload.table!r}")
            return _Repair(table, side_from_proto(payload.base), table.decode_key(payload.key))
        except ValueError as exc:
            FIXES.labels(payload.table if table is not None else "unknown", _SKIPPED).inc()
            logger.warning(
                "bad difference event skipped",
                extra={
                    "topic": event.topic,
                    "partition": event.partition,
                    "offset": event.offset,
                    "table": payload.table,
                    "key": payload.key,
                    "error": repr(exc),
                },
            )
            return None
