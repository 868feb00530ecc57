"""The validator: compares a table's two copies and publishes every difference.

A :class:`Validator` compares one :class:`~kit.migrator.tables.MigratedTable` in one
:class:`Direction`: the **base** side is right, the **target** is checked against it. It
finds rows missing on the target, rows whose columns differ, and rows extra on the target,
and hands each :class:`Difference` to a :class:`DifferenceSink` (the Kafka topic the fixer
consumes: :class:`KafkaDifferenceSink`).

- **Full** (:meth:`Validator.run_full`): the whole table in primary-key order, in batches
  of ``batch_size``. Each batch takes the next keys of the base side and the target's rows
  in the same key range, so rows only the target has are found too.
- **Incremental** (:meth:`Validator.run_incremental`): the rows whose update time is at or
  after the checkpoint minus ``overlap_ms``, on both sides (the base side's for missing and
  different rows, the target's for extra ones). The overlap catches rows committed late: an
  update time is taken before its transaction commits, so a row may appear with a time
  older than rows already checked. A hard delete leaves no update time on the base side, so
  only a full pass finds the target rows it leaves behind.

**Checkpoints** (:mod:`kit.migrator.checkpoints`): after every batch whose differences the
sink has accepted (for Kafka: acknowledged by the broker), never before. A validator that
dies or is cancelled leaves its checkpoint at its last published batch, and the next one
resumes there: a difference is published at least once, never skipped.

**Read the primaries.** Give the validator sessions on each database's primary, never a
replica: a replica lags by a few milliseconds to minutes, and a row just written on the
primary would be reported missing or different. Such false differences cost only a repair,
but a lagging replica would also hide real ones and make the validation never settle.

**Live writes make transient differences**: a row written between the base read and the
target read, or between a double write's two commits. With ``recheck_delay_s`` the
validator reads the differing rows of a batch again after that delay and publishes only those
that still differ. What remains is harmless: the fixer re-reads the base side.

**Throttled** so that validation never hurts the service using the base side: at most
``rows_per_second()`` rows per second (a callable: a live setting; 0 or less pauses it), and
when a batch's base-side query takes longer than ``latency_threshold_s`` it backs off
(doubling up to ``backoff_max_s``, reset by a fast batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry import trace
from sqlalchemy import ColumnElement, and_, select, true

from kit.events import EventProducer, topic_name
from kit.migrator.checkpoints import Checkpoint, CheckpointStore
from kit.migrator.double_write import Sessions, Sides
from kit.migrator.metrics import (
    CHECKPOINT_AGE,
    DIFFERENCES,
    ROWS_CHECKED,
    THROTTLED,
    VALIDATOR_LAG,
    declare_validation,
)
from kit.migrator.mode import Mode, Side
from kit.migrator.tables import Key, MigratedTable, Row, read_images
from webook.migrator.v1 import migrator_pb2

logger = logging.getLogger(__name__)
TRACER_NAME = "webook.migrator"


class Direction(StrEnum):
    """Which side is right (the base) and which is checked (the target)."""

    SOURCE_TO_DESTINATION = "source_to_destination"
    DESTINATION_TO_SOURCE = "destination_to_source"

    @property
    def base(self) -> Side:
        """The side that is right."""
        return Side.SOURCE if self is Direction.SOURCE_TO_DESTINATION else Side.DESTINATION

    @property
    def target(self) -> Side:
        """The side checked and repaired."""
        return self.base.other

    @classmethod
    def from_base(cls, base: Side) -> Direction:
        """The direction whose base is ``base``."""
        return cls.SOURCE_TO_DESTINATION if base is Side.SOURCE else cls.DESTINATION_TO_SOURCE

    @classmethod
    def for_mode(cls, mode: Mode) -> Direction:
        """The direction to validate in ``mode``: from the side written first."""
        return cls.from_base(mode.first)


class Validation(StrEnum):
    """Full (key ranges) or incremental (recently updated rows)."""

    FULL = "full"
    INCREMENTAL = "incremental"


class DifferenceKind(StrEnum):
    """How the target's row differs from the base's."""

    MISSING = "missing"
    DIFFERENT = "different"
    EXTRA = "extra"


def declare_metrics(table: MigratedTable, directions: Sequence[Direction]) -> None:
    """The validator's counters of ``table`` in ``directions`` at 0 (incremental ones only
    for a table with an update time)."""
    validations = [Validation.FULL]
    if table.updated_at is not None:
        validations.append(Validation.INCREMENTAL)
    declare_validation(
        table.name,
        [direction.value for direction in directions],
        [validation.value for validation in validations],
        [kind.value for kind in DifferenceKind],
    )


_SIDES = {Side.SOURCE: migrator_pb2.SIDE_SOURCE, Side.DESTINATION: migrator_pb2.SIDE_DESTINATION}
_KINDS = {
    DifferenceKind.MISSING: migrator_pb2.DIFFERENCE_KIND_MISSING,
    DifferenceKind.DIFFERENT: migrator_pb2.DIFFERENCE_KIND_DIFFERENT,
    DifferenceKind.EXTRA: migrator_pb2.DIFFERENCE_KIND_EXTRA,
}
_VALIDATIONS = {
    Validation.FULL: migrator_pb2.VALIDATION_KIND_FULL,
    Validation.INCREMENTAL: migrator_pb2.VALIDATION_KIND_INCREMENTAL,
}


def side_from_proto(value: int) -> Side:
    """The :class:`Side` of a ``webook.migrator.v1.Side`` (``ValueError`` for another)."""
    for side, number in _SIDES.items():
        if number == value:
            return side
    raise ValueError(f"not a side: {value}")


@dataclass(frozen=True, slots=True)
class Difference:
    """A row whose copies differ."""

    table: str
    key: str
    """The primary key as a JSON array (:meth:`MigratedTable.encode_key`)."""
    kind: DifferenceKind
    base: Side
    found_by: Validation
    found_at_ms: int

    def to_proto(self) -> migrator_pb2.Difference:
        """The event published for it."""
        return migrator_pb2.Difference(
            table=self.table,
            key=self.key,
            base=_SIDES[self.base],
            kind=_KINDS[self.kind],
            found_by=_VALIDATIONS[self.found_by],
            found_at_ms=self.found_at_ms,
        )

    @property
    def event_key(self) -> str:
        """The record key: one row's events stay in one partition, in order."""
        return f"{self.table}:{self.key}"


class DifferenceSink(Protocol):
    """Where differences go; :meth:`publish` returns only once they are durable."""

    async def publish(self, differences: Sequence[Difference]) -> None:
        """Publish ``differences``; raise if they may not all have been kept."""
        ...


class DifferencesNotPublished(RuntimeError):
    """The sink could not make a batch's differences durable (the batch is checked again)."""


def difference_topic() -> str:
    """The topic the protos declare for difference events."""
    return topic_name(migrator_pb2.Topic, migrator_pb2.TOPIC_MIGRATION_DIFFERENCE)


class KafkaDifferenceSink:
    """Publishes differences with an :class:`~kit.events.EventProducer` and waits for the
    broker's acknowledgement of all of them (``flush``).

    Give it a producer of its own: ``flush`` waits for everything the producer holds.
    """

    def __init__(
        self, producer: EventProducer, *, topic: str | None = None, flush_timeout_s: float = 30.0
    ) -> None:
        self._producer = producer
        self.topic = topic or difference_topic()
        self._flush_timeout_s = flush_timeout_s

    async def publish(self, differences: Sequence[Difference]) -> None:
        """Queue every difference, then wait until the broker acknowledged them."""
        for difference in differences:
            if not self._producer.publish(self.topic, difference.event_key, difference.to_proto()):
                raise DifferencesNotPublished("the producer dropped a difference event")
        if differences and not await self._producer.flush(self._flush_timeout_s):
            raise DifferencesNotPublished(
                f"difference events not acknowledged within {self._flush_timeout_s} s"
            )


def _default_budget() -> float:
    return 2000.0


@dataclass(frozen=True)
class ValidatorConfig:
    """How a :class:`Validator` reads, paces itself and resumes.

    Attributes:
        batch_size: rows read per side per batch.
        rows_per_second: the budget, read before each batch (a live value); 0 or less
            pauses the validator (it checks again every ``pause_poll_s``).
        latency_threshold_s: a base-side query slower than this backs off.
        backoff_s / backoff_max_s: the first and the longest back-off.
        overlap_ms: how far before its checkpoint an incremental pass starts again.
        recheck_delay_s: differing rows are read again after this delay and published only
            if they still differ (0: publish at once).
        publish_attempts: attempts at publishing a batch's differences before the pass
            fails (its checkpoint stays before the batch).
    """

    batch_size: int = 500
    rows_per_second: Callable[[], float] = field(default=_default_budget)
    latency_threshold_s: float = 0.5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    overlap_ms: int = 60_000
    recheck_delay_s: float = 1.0
    pause_poll_s: float = 1.0
    publish_attempts: int = 3

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.overlap_ms < 0 or self.recheck_delay_s < 0 or self.publish_attempts < 1:
            raise ValueError("overlap_ms and recheck_delay_s must be >= 0, attempts >= 1")


@dataclass(slots=True)
class ValidationReport:
    """What one pass did."""

    validation: Validation
    rows_checked: int = 0
    batches: int = 0
    differences: dict[DifferenceKind, int] = field(default_factory=dict)
    finished: bool = False

    @property
    def total_differences(self) -> int:
        """Differences published by the pass."""
        return sum(self.differences.values())


class _Throttle:
    """Paces batches to the rows/second budget and backs off when the base side is slow."""

    def __init__(self, table: str, config: ValidatorConfig) -> None:
        self._config = config
        self._budget_waits = THROTTLED.labels(table, "budget")
        self._latency_waits = THROTTLED.labels(table, "latency")
        # None until the first batch: a new validator starts paced, with no second of credit.
        self._next_at: float | None = None
        self._backoff = config.backoff_s

    async def before_batch(self) -> None:
        """Wait while the budget is 0 or less (paused)."""
        while self._config.rows_per_second() <= 0:
            await asyncio.sleep(self._config.pause_poll_s)
            self._budget_waits.inc(self._config.pause_poll_s)

    async def after_batch(self, rows: int, base_latency_s: float) -> None:
        """Wait as long as ``rows`` rows cost in the budget, longer if the base was slow."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        rate = self._config.rows_per_second()
        if rate > 0:
            start = now if self._next_at is None else max(self._next_at, now - 1.0)
            self._next_at = start + rows / rate
        budget_wait = max(0.0, self._next_at - now) if self._next_at is not None else 0.0
        latency_wait = 0.0
        if base_latency_s > self._config.latency_threshold_s:
            latency_wait = self._backoff
            self._backoff = min(self._backoff * 2, self._config.backoff_max_s)
            logger.info(
                "validator backing off: base side slow",
                extra={"latency_s": round(base_latency_s, 3), "backoff_s": latency_wait},
            )
        else:
            self._backoff = self._config.backoff_s
        if budget_wait > 0:
            self._budget_waits.inc(budget_wait)
        if latency_wait > 0:
            self._latency_waits.inc(latency_wait)
        wait = max(budget_wait, latency_wait)
        if wait > 0:
            await asyncio.sleep(wait)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Validator:
    """Compares one table in one direction (module docstring).

    Args:
        table: the table.
        sides: the two databases (their primaries).
        direction: which side is the base.
        sink: where the differences go.
        checkpoints: where the position is kept (:meth:`CheckpointStore.ensure_table` first).
        config: batches, budget, back-off, overlap, recheck.
        tracer_provider: for the ``migrator.validate_batch`` spans (the global one by default).
    """

    def __init__(
        self,
        table: MigratedTable,
        sides: Sides,
        direction: Direction,
        sink: DifferenceSink,
        checkpoints: CheckpointStore,
        config: ValidatorConfig | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._table = table
        self._direction = direction
        self._base: Sessions = sides.of(direction.base)
        self._target: Sessions = sides.of(direction.target)
        self._sink = sink
        self._checkpoints = checkpoints
        self._config = config or ValidatorConfig()
        self._throttle = _Throttle(table.name, self._config)
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._labels = (table.name, direction.value)
        declare_metrics(table, [direction])

    @property
    def direction(self) -> Direction:
        """Which side is the base."""
        return self._direction

    # -- full ----------------------------------------------------------------------------

    async def run_full(self) -> ValidationReport:
        """One full pass from the checkpoint to the end of the table; clears the checkpoint
        when it finishes, so the next pass starts from the first key."""
        report = ValidationReport(Validation.FULL)
        checkpoint = await self._load(Validation.FULL)
        last = None if checkpoint.last_key is None else self._table.decode_key(checkpoint.last_key)
        logger.info(
            "full validation started",
            extra={**self._log_fields(), "from_key": checkpoint.last_key},
        )
        while True:
            await self._throttle.before_batch()
            with self._batch_span(Validation.FULL) as span:
                batch = await self._full_batch(last)
                span.set_attribute("migrator.rows", len(batch.keys))
                differences = await self._compare_and_publish(batch, Validation.FULL, report)
                span.set_attribute("migrator.differences", differences)
            if batch.upper is None:
                await self._save(Validation.FULL, Checkpoint(None, None, checkpoint.passes + 1))
                report.finished = True
                break
            last = batch.upper
            checkpoint = await self._save(
                Validation.FULL,
                Checkpoint(self._table.encode_key(last), None, checkpoint.passes),
            )
            await self._throttle.after_batch(len(batch.keys), batch.base_latency_s)
        logger.info("full validation finished", extra={**self._log_fields(), **_fields(report)})
        return report

    async def _full_batch(self, last: Key | None) -> _Batch:
        """The next key range after ``last``: both sides' rows in it, and its upper key
        (``None`` when the range reaches the end of both sides)."""
        size = self._config.batch_size
        loop = asyncio.get_running_loop()
        started = loop.time()
        base_rows = await self._page(self._base, last, None, size)
        latency = loop.time() - started
        base_full = len(base_rows) == size
        upper = self._table.key_of(base_rows[-1]) if base_full else None
        await asyncio.sleep(0)  # let the service's requests run between the batch's steps
        target_rows = await self._page(self._target, last, upper, size)
        if len(target_rows) == size:
            # The target has more rows than the base in the range: stop where the target's
            # page stops, and read the base's rows of that narrower range again.
            upper = self._table.key_of(target_rows[-1])
            started = loop.time()
            base_rows = await self._page(self._base, last, upper, size)
            latency = max(latency, loop.time() - started)
        return _Batch(
            base={self._table.key_of(row): row for row in base_rows},
            target={self._table.key_of(row): row for row in target_rows},
            upper=upper,
            base_latency_s=latency,
        )

    async def _page(
        self, sessions: Sessions, after: Key | None, upto: Key | None, limit: int
    ) -> list[Row]:
        """Rows with ``after < key <= upto`` in key order, at most ``limit``."""
        key = list(self._table.key_columns)
        conditions: list[ColumnElement[bool]] = []
        if after is not None:
            conditions.append(self._table.after(key, after))
        if upto is not None:
            conditions.append(~self._table.after(key, upto))
        stmt = select(self._table.table).where(and_(true(), *conditions))
        stmt = stmt.order_by(*key).limit(limit)
        async with sessions() as session:
            rows = (await session.execute(stmt)).all()
        return self._table.images(rows)

    # -- incremental ---------------------------------------------------------------------

    async def run_incremental(self) -> ValidationReport:
        """One incremental pass: rows updated at or after the checkpoint minus the overlap,
        up to the latest, on both sides. The checkpoint ends at the latest update time both
        sides were read to."""
        config = self._config
        report = ValidationReport(Validation.INCREMENTAL)
        began_s = time.time()
        checkpoint = await self._load(Validation.INCREMENTAL)
        since = None if checkpoint.last_time is None else checkpoint.last_time - config.overlap_ms
        logger.info(
            "incremental validation started", extra={**self._log_fields(), "since_ms": since}
        )
        base_cursor = _TimeCursor(since)
        target_cursor = _TimeCursor(since)
        loop = asyncio.get_running_loop()
        while not (base_cursor.done and target_cursor.done):
            await self._throttle.before_batch()
            with self._batch_span(Validation.INCREMENTAL) as span:
                latency = 0.0
                base_rows: list[Row] = []
                target_rows: list[Row] = []
                if not base_cursor.done:
                    started = loop.time()
                    base_rows = await self._time_page(self._base, base_cursor)
                    latency = loop.time() - started
                if not target_cursor.done:
                    target_rows = await self._time_page(self._target, target_cursor)
                # Each side's rows are compared with the other side's rows of the same keys.
                base = {self._table.key_of(row): row for row in base_rows}
                target = {self._table.key_of(row): row for row in target_rows}
                other_target = await self._read(self._target, [k for k in base if k not in target])
                other_base = await self._read(self._base, [k for k in target if k not in base])
                batch = _Batch(
                    base={**base, **other_base},
                    target={**target, **other_target},
                    upper=None,
                    base_latency_s=latency,
                )
                span.set_attribute("migrator.rows", len(batch.keys))
                differences = await self._compare_and_publish(batch, Validation.INCREMENTAL, report)
                span.set_attribute("migrator.differences", differences)
            reached = _reached(base_cursor, target_cursor)
            if reached is not None:
                checkpoint = await self._save(
                    Validation.INCREMENTAL,
                    Checkpoint(
                        None if reached[1] is None else self._table.encode_key(reached[1]),
                        reached[0],
                        checkpoint.passes,
                    ),
                )
            await self._throttle.after_batch(len(batch.keys), latency)
        await self._save(
            Validation.INCREMENTAL,
            Checkpoint(checkpoint.last_key, checkpoint.last_time, checkpoint.passes + 1),
        )
        if checkpoint.last_time is None:
            # Neither side had a row: the pass checked everything up to when it began.
            VALIDATOR_LAG.labels(*self._labels).set_function(
                lambda: max(0.0, time.time() - began_s)
            )
        report.finished = True
        logger.info(
            "incremental validation finished", extra={**self._log_fields(), **_fields(report)}
        )
        return report

    async def _time_page(self, sessions: Sessions, cursor: _TimeCursor) -> list[Row]:
        """The next page of ``cursor`` in (update time, key) order; moves the cursor."""
        updated = self._table.updated_column
        key = list(self._table.key_columns)
        conditions: list[ColumnElement[bool]] = []
        if cursor.position is not None:
            time_value, key_value = cursor.position
            conditions.append(self._table.after([updated, *key], [time_value, *key_value]))
        elif cursor.since is not None:
            conditions.append(updated >= cursor.since)
        stmt = (
            select(self._table.table)
            .where(and_(true(), *conditions))
            .order_by(updated, *key)
            .limit(self._config.batch_size)
        )
        async with sessions() as session:
            rows = self._table.images((await session.execute(stmt)).all())
        if rows:
            last = rows[-1]
            cursor.position = (last[updated.name], self._table.key_of(last))
        cursor.done = len(rows) < self._config.batch_size
        return rows

    # -- comparing and publishing --------------------------------------------------------

    async def _read(self, sessions: Sessions, keys: Sequence[Key]) -> dict[Key, Row]:
        if not keys:
            return {}
        async with sessions() as session:
            return await read_images(session, self._table, keys)

    def _differences(
        self, base: Mapping[Key, Row], target: Mapping[Key, Row]
    ) -> dict[Key, DifferenceKind]:
        found: dict[Key, DifferenceKind] = {}
        for key, row in base.items():
            other = target.get(key)
            if other is None:
                found[key] = DifferenceKind.MISSING
            elif other != row:
                found[key] = DifferenceKind.DIFFERENT
        for key in target:
            if key not in base:
                found[key] = DifferenceKind.EXTRA
        return found

    async def _compare_and_publish(
        self, batch: _Batch, validation: Validation, report: ValidationReport
    ) -> int:
        await asyncio.sleep(0)
        found = self._differences(batch.base, batch.target)
        if found and self._config.recheck_delay_s > 0:
            await asyncio.sleep(self._config.recheck_delay_s)
            keys = list(found)
            found = self._differences(
                await self._read(self._base, keys), await self._read(self._target, keys)
            )
        at_ms = _now_ms()
        differences = [
            Difference(
                self._table.name,
                self._table.encode_key(key),
                kind,
                self._direction.base,
                validation,
                at_ms,
            )
            for key, kind in found.items()
        ]
        await self._publish(differences)
        report.batches += 1
        report.rows_checked += len(batch.keys)
        ROWS_CHECKED.labels(*self._labels, validation.value).inc(len(batch.keys))
        for difference in differences:
            report.differences[difference.kind] = report.differences.get(difference.kind, 0) + 1
            DIFFERENCES.labels(*self._labels, difference.kind.value).inc()
        if differences:
            logger.info(
                "differences found",
                extra={
                    **self._log_fields(),
                    "validation": validation.value,
                    "count": len(differences),
                    "keys": [d.key for d in differences[:20]],
                },
            )
        return len(differences)

    async def _publish(self, differences: Sequence[Difference]) -> None:
        if not differences:
            return
        attempts = self._config.publish_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._sink.publish(differences)
                return
            except Exception as exc:
                if attempt == attempts:
                    raise
                logger.warning(
                    "publishing differences failed; retrying",
                    extra={**self._log_fields(), "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(self._config.backoff_s * attempt)

    # -- checkpoints, spans, logs --------------------------------------------------------

    async def _load(self, validation: Validation) -> Checkpoint:
        checkpoint = await self._checkpoints.load(
            self._table.name, self._direction.value, validation.value
        )
        self._report_checkpoint(validation, checkpoint)
        return checkpoint

    async def _save(self, validation: Validation, checkpoint: Checkpoint) -> Checkpoint:
        saved = await self._checkpoints.save(
            self._table.name, self._direction.value, validation.value, checkpoint
        )
        self._report_checkpoint(validation, saved)
        return saved

    def _report_checkpoint(self, validation: Validation, checkpoint: Checkpoint) -> None:
        saved_at = checkpoint.updated_ms / 1000 if checkpoint.updated_ms else time.time()
        CHECKPOINT_AGE.labels(*self._labels, validation.value).set_function(
            lambda: max(0.0, time.time() - saved_at)
        )
        if validation is Validation.INCREMENTAL and checkpoint.last_time is not None:
            reached_s = checkpoint.last_time / 1000
            VALIDATOR_LAG.labels(*self._labels).set_function(
                lambda: max(0.0, time.time() - reached_s)
            )

    def _batch_span(self, validation: Validation) -> Any:
        return self._tracer.start_as_current_span(
            "migrator.validate_batch",
            attributes={
                "migrator.table": self._table.name,
                "migrator.direction": self._direction.value,
                "migrator.validation": validation.value,
            },
        )

    def _log_fields(self) -> dict[str, Any]:
        return {"table": self._table.name, "direction": self._direction.value}


@dataclass(slots=True)
class _Batch:
    base: dict[Key, Row]
    target: dict[Key, Row]
    upper: Key | None
    base_latency_s: float

    @property
    def keys(self) -> set[Key]:
        return set(self.base) | set(self.target)


@dataclass(slots=True)
class _TimeCursor:
    """Where one side's incremental scan is: rows after ``position`` (update time, key)."""

    since: int | None
    position: tuple[Any, Key] | None = None
    done: bool = False


def _reached(*cursors: _TimeCursor) -> tuple[int, Key | None] | None:
    """The update time both sides have been read to (a finished side does not hold the
    other back), with the key there; ``None`` before either moved."""
    moving = [c for c in cursors if not c.done and c.position is not None]
    pending = [c for c in cursors if not c.done and c.position is None]
    if pending:
        return None
    if moving:
        position = min((c.position for c in moving if c.position), key=lambda p: p[0])
        return int(position[0]), position[1]
    finished = [c.position for c in cursors if c.position is not None]
    if not finished:
        return None
    position = max(finished, key=lambda p: p[0])
    return int(position[0]), position[1]


def _fields(report: ValidationReport) -> dict[str, Any]:
    return {
        "validation": report.validation.value,
        "rows_checked": report.rows_checked,
        "batches": report.batches,
        "differences": {kind.value: count for kind, count in report.differences.items()},
    }
