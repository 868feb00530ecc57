"""The admin API of the migrations a process hosts: ``webook.migrator.v1.MigratorService``.

A service that moves tables with :mod:`kit.migrator` describes each migration as a
:class:`HostedMigration` (its :class:`~kit.migrator.mode.ModeHolder`, its tables, how to
make a :class:`~kit.migrator.validator.Validator`, the checkpoint store and, when the fixer
runs in the process, a :class:`HostedFixer`) and mounts :class:`MigratorAdmin` on its runner
(``runner.mount(MigratorAdmin([hosted]))``; callers: the operator). Operators read the
status, switch this process's mode and start or stop validations with
``webookctl migrate``.

- **Mode**: ``SetMode`` holds a mode in the process called (:meth:`ModeHolder.set`: a skipped
  step is refused unless forced; between the two "first" modes the step is ``switching``).
  Every replica has its own holder: switch them all, or change the service's live setting,
  which is what a restarted replica reads.
- **Validations** run in the background, at most one per kind (full, incremental) per
  migration: a full one makes one pass over every table and ends, an incremental one makes
  a pass every ``incremental_interval_s`` until stopped. Each run validates from one base
  side (by default the current mode's first side). Stopping one cancels it: its checkpoints
  stay at its last published batch and the next run resumes there.
- **Status** gives the mode, the double-write units of work in flight in the process (0 on
  every replica in ``switching``: the switch to the other "first" mode is safe), the latest
  run of each kind (rows compared and differences
  published by that run, where it is, when it started and ended, why it stopped) and the
  fixer (running, rows fixed and events skipped since the process started).

Errors are :mod:`kit.migrator.errors` (the ``ErrorReason`` domain of
``protos/webook/migrator/v1/migrator.proto``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import REGISTRY

from kit.events import BatchConsumer, ConsumerConfig
from kit.migrator.checkpoints import CheckpointStore
from kit.migrator.errors import (
    DOMAIN,
    MigratorError,
    MigratorFailedPrecondition,
    MigratorInvalidArgument,
    MigratorNotFound,
    Reason,
)
from kit.migrator.fixer import Fixer
from kit.migrator.mode import ModeHolder, ModeRefused, Side, parse_mode
from kit.migrator.tables import MigratedTable
from kit.migrator.validator import (
    Difference,
    DifferenceSink,
    Direction,
    Validation,
    Validator,
    declare_metrics,
    side_from_proto,
)
from webook.migrator.v1 import migrator_pb2, migrator_pb2_grpc

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


ValidatorFactory = Callable[[MigratedTable, Direction, DifferenceSink], Validator]
"""Makes the validator of one table in one direction, publishing to the sink it is given."""

_KIND_NUMBERS: dict[Validation, migrator_pb2.ValidationKind.ValueType] = {
    Validation.FULL: migrator_pb2.VALIDATION_KIND_FULL,
    Validation.INCREMENTAL: migrator_pb2.VALIDATION_KIND_INCREMENTAL,
}
_KINDS: dict[int, Validation] = {number: kind for kind, number in _KIND_NUMBERS.items()}
_SIDE_NUMBERS = {
    Side.SOURCE: migrator_pb2.SIDE_SOURCE,
    Side.DESTINATION: migrator_pb2.SIDE_DESTINATION,
}
_FIXED = ("upserted", "deleted")
_SKIPPED = ("skipped", "failed")
STOPPED = "stopped"
"""The ``error`` of a run that :meth:`HostedMigration.stop_validation` ended."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class ValidationRun:
    """One validation started in this process (what ``Status`` reports of it)."""

    kind: Validation
    direction: Direction
    tables: tuple[MigratedTable, ...]
    started_ms: int = field(default_factory=_now_ms)
    ended_ms: int = 0
    differences: int = 0
    table: str = ""
    """The table being validated (the last one, once the run ended)."""
    passes: int = 0
    """Passes over every table that finished (an incremental run makes one per interval)."""
    error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    _rows_before: float = field(default=0.0, repr=False)
    _rows_frozen: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._rows_before = self._rows_counted()

    @property
    def running(self) -> bool:
        """Whether the run's task is still going."""
        return self.task is not None and not self.task.done()

    @property
    def rows_checked(self) -> int:
        """Rows this run compared, over every table (read from the validator's counter)."""
        if self._rows_frozen is not None:
            return self._rows_frozen
        return int(self._rows_counted() - self._rows_before)

    def _rows_counted(self) -> float:
        return sum(
            _sample(
                "webook_migrator_rows_checked_total",
                table=table.name,
                direction=self.direction.value,
                validation=self.kind.value,
            )
            for table in self.tables
        )

    def end(self, error: str = "") -> None:
        """Record the end of the run (its row count no longer moves)."""
        self._rows_frozen = self.rows_checked
        self.ended_ms = _now_ms()
        self.error = error


class _CountingSink:
    """Passes differences on to the migration's sink and counts them for one run."""

    def __init__(self, inner: DifferenceSink, run: ValidationRun) -> None:
        self._inner = inner
        self._run = run

    async def publish(self, differences: Sequence[Difference]) -> None:
        await self._inner.publish(differences)
        self._run.differences += len(differences)


class HostedFixer:
    """The fixer's consumer as a runner component that knows whether it runs.

    Args:
        fixer: the repairs.
        config: the consumer's group (its own), batching and Kafka settings.
        topic: the difference topic (the declared one by default).
    """

    def __init__(self, fixer: Fixer, config: ConsumerConfig, *, topic: str | None = None) -> None:
        self.consumer: BatchConsumer = fixer.consumer(config, topic=topic)
        self.running = False

    def start(self) -> None:
        """Join the group and repair what the validators publish."""
        self.consumer.start()
        self.running = True

    async def stop(self) -> None:
        """Leave the group (the batch in hand is finished first)."""
        self.running = False
        await self.consumer.stop()


@dataclass(frozen=True)
class FixerCounts:
    """What the fixer of a migration did since the migration was hosted."""

    running: bool
    fixed: int
    skipped: int


class HostedMigration:
    """One migration as its process runs it: mode, validations, fixer (module docstring).

    Args:
        mode: the migration's mode holder (its ``migration`` is the migration's name).
        tables: the tables it moves.
        validators: makes a table's validator in a direction, publishing to a given sink.
        sink: where validators publish differences (the fixer's topic).
        checkpoints: the validators' checkpoint store (its table is created before each run).
        fixer: the fixer's consumer when it runs in this process.
        incremental_interval_s: the pause between two passes of an incremental run.
    """

    def __init__(
        self,
        mode: ModeHolder,
        tables: Sequence[MigratedTable],
        validators: ValidatorFactory,
        sink: DifferenceSink,
        checkpoints: CheckpointStore,
        *,
        fixer: HostedFixer | None = None,
        incremental_interval_s: float = 10.0,
    ) -> None:
        if not tables:
            raise ValueError("a migration moves at least one table")
        if incremental_interval_s < 0:
            raise ValueError("incremental_interval_s must be >= 0")
        self.mode = mode
        self.tables = tuple(tables)
        self.fixer = fixer
        self._validators = validators
        self._sink = sink
        self._checkpoints = checkpoints
        self._interval_s = incremental_interval_s
        self._runs: dict[Validation, ValidationRun] = {}
        # Validations may run in either direction here: every series exists from the start.
        for table in self.tables:
            declare_metrics(table, list(Direction))
        self._fixes_before = self._fix_counts()

    @property
    def name(self) -> str:
        """The migration's name."""
        return self.mode.migration

    def runs(self) -> list[ValidationRun]:
        """The latest run of each kind started here, full first."""
        return [self._runs[kind] for kind in Validation if kind in self._runs]

    def run(self, kind: Validation) -> ValidationRun | None:
        """The latest run of ``kind``, if one was started."""
        return self._runs.get(kind)

    def fixer_counts(self) -> FixerCounts:
        """The fixer's state and what it did to this migration's tables since then."""
        fixed, skipped = self._fix_counts()
        return FixerCounts(
            running=self.fixer is not None and self.fixer.running,
            fixed=int(fixed - self._fixes_before[0]),
            skipped=int(skipped - self._fixes_before[1]),
        )

    def _fix_counts(self) -> tuple[float, float]:
        def total(outcomes: tuple[str, ...]) -> float:
            return sum(
                _sample("webook_migrator_fixes_total", table=table.name, outcome=outcome)
                for table in self.tables
                for outcome in outcomes
            )

        return total(_FIXED), total(_SKIPPED)

    def start_validation(self, kind: Validation, base: Side | None = None) -> ValidationRun:
        """Start a run of ``kind`` from ``base`` (the current mode's first side when
        ``None``); :class:`MigratorFailedPrecondition` if one of that kind is running."""
        current = self._runs.get(kind)
        if current is not None and current.running:
            raise MigratorFailedPrecondition(
                Reason.ALREADY_RUNNING,
                f"a {kind.value} validation of {self.name!r} is already running here",
            )
        direction = Direction.from_base(base or self.mode.current().first)
        run = ValidationRun(kind, direction, self.tables)
        run.task = asyncio.create_task(
            self._validate(run), name=f"migrator-{self.name}-{kind.value}"
        )
        self._runs[kind] = run
        return run

    async def stop_validation(self, kind: Validation) -> bool:
        """Stop the run of ``kind``; whether one was running."""
        run = self._runs.get(kind)
        if run is None or run.task is None or run.task.done():
            return False
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        if not run.ended_ms:  # cancelled before its first step
            run.end(STOPPED)
        return True

    async def close(self) -> None:
        """Stop every run (the process is stopping)."""
        for kind in list(self._runs):
            await self.stop_validation(kind)

    async def checkpoint_text(self, run: ValidationRun) -> str:
        """Where ``run`` is: ``"<table> <position>"`` from the table's saved checkpoint."""
        if not run.table:
            return ""
        try:
            saved = await self._checkpoints.load(run.table, run.direction.value, run.kind.value)
        except Exception as exc:
            return f"{run.table} (checkpoint unreadable: {type(exc).__name__})"
        parts = [run.table]
        if run.kind is Validation.INCREMENTAL:
            parts.append(f"time={saved.last_time if saved.last_time is not None else '-'}")
        parts.append(f"key={saved.last_key or '-'}")
        parts.append(f"passes={saved.passes}")
        return " ".join(parts)

    async def _validate(self, run: ValidationRun) -> None:
        fields = {"migration": self.name, "validation": run.kind.value}
        logger.info("validation run started", extra={**fields, "direction": run.direction.value})
        sink = _CountingSink(self._sink, run)
        try:
            await self._checkpoints.ensure_table()
            while True:
                for table in self.tables:
                    if run.kind is Validation.INCREMENTAL and table.updated_at is None:
                        continue  # no update time: full validation only
                    run.table = table.name
                    validator = self._validators(table, run.direction, sink)
                    if run.kind is Validation.FULL:
                        await validator.run_full()
                    else:
                        await validator.run_incremental()
                run.passes += 1
                if run.kind is Validation.FULL:
                    break
                await asyncio.sleep(self._interval_s)
        except asyncio.CancelledError:
            run.end(STOPPED)
            logger.info("validation run stopped", extra={**fields, "passes": run.passes})
            raise
        except Exception as exc:
            run.end(repr(exc))
            logger.warning(
                "validation run failed",
                extra={**fields, "table": run.table, "error": repr(exc)},
            )
            return
        run.end()
        logger.info(
            "validation run finished",
            extra={**fields, "rows_checked": run.rows_checked, "differences": run.differences},
        )


def _field_error(field_name: str, message: str) -> MigratorInvalidArgument:
    return MigratorInvalidArgument(Reason.INVALID_ARGUMENT, message, metadata={"field": field_name})


class MigratorAdmin(migrator_pb2_grpc.MigratorServiceServicer):
    """Serves ``MigratorService`` over the migrations of one process.

    Args:
        migrations: the hosted migrations, by their distinct names.
    """

    def __init__(self, migrations: Sequence[HostedMigration]) -> None:
        self._migrations = {hosted.name: hosted for hosted in migrations}
        if len(self._migrations) != len(migrations):
            raise ValueError("hosted migrations need distinct names")

    def hosted(self, name: str) -> HostedMigration:
        """The migration ``name`` (empty: the only one); errors as the API answers them."""
        if not name:
            if len(self._migrations) == 1:
                return next(iter(self._migrations.values()))
            if not self._migrations:
                raise MigratorNotFound(Reason.UNKNOWN_MIGRATION, "this process hosts no migration")
            raise _field_error(
                "migration", f"name one of the migrations hosted here: {sorted(self._migrations)}"
            )
        hosted = self._migrations.get(name)
        if hosted is None:
            raise MigratorNotFound(
                Reason.UNKNOWN_MIGRATION,
                f"no migration {name!r} here; hosted: {sorted(self._migrations)}",
                metadata={"migration": name},
            )
        return hosted

    async def Status(
        self, request: migrator_pb2.StatusRequest, context: Context
    ) -> migrator_pb2.StatusResponse:
        """The mode, the units of work in flight, the latest run of each validation kind and
        the fixer."""
        hosted = self.hosted(request.migration)
        validations = [
            migrator_pb2.ValidationStatus(
                kind=_KIND_NUMBERS[run.kind],
                base=_SIDE_NUMBERS[run.direction.base],
                running=run.running,
                rows_checked=run.rows_checked,
                differences=run.differences,
                checkpoint=await hosted.checkpoint_text(run),
                started_ms=run.started_ms,
                ended_ms=run.ended_ms,
                error=run.error,
            )
            for run in hosted.runs()
        ]
        fixer = hosted.fixer_counts()
        return migrator_pb2.StatusResponse(
            migration=hosted.name,
            tables=[table.name for table in hosted.tables],
            mode=hosted.mode.current().value,
            units_in_flight=hosted.mode.in_flight,
            validations=validations,
            fixer=migrator_pb2.FixerStatus(
                running=fixer.running, fixed=fixer.fixed, skipped=fixer.skipped
            ),
        )

    async def SetMode(
        self, request: migrator_pb2.SetModeRequest, context: Context
    ) -> migrator_pb2.SetModeResponse:
        """Hold a mode in this process (a skipped step needs ``force``)."""
        hosted = self.hosted(request.migration)
        try:
            wanted = parse_mode(request.mode)
        except ModeRefused as exc:
            raise _field_error("mode", str(exc)) from exc
        try:
            previous = hosted.mode.set(wanted, force=request.force)
        except ModeRefused as exc:
            raise MigratorFailedPrecondition(
                Reason.MODE_REFUSED, str(exc), metadata={"mode": wanted.value}
            ) from exc
        logger.warning(
            "migration mode set through the admin API",
            extra={
                "migration": hosted.name,
                "from": previous.value,
                "to": wanted.value,
                "force": request.force,
            },
        )
        return migrator_pb2.SetModeResponse(previous=previous.value, mode=wanted.value)

    async def StartValidation(
        self, request: migrator_pb2.StartValidationRequest, context: Context
    ) -> migrator_pb2.StartValidationResponse:
        """Start a validation of that kind in the background."""
        hosted = self.hosted(request.migration)
        kind = _kind(request.kind)
        base: Side | None = None
        if request.base != migrator_pb2.SIDE_UNSPECIFIED:
            try:
                base = side_from_proto(request.base)
            except ValueError as exc:
                raise _field_error("base", str(exc)) from exc
        hosted.start_validation(kind, base)
        return migrator_pb2.StartValidationResponse()

    async def StopValidation(
        self, request: migrator_pb2.StopValidationRequest, context: Context
    ) -> migrator_pb2.StopValidationResponse:
        """Stop the validation of that kind if one runs."""
        hosted = self.hosted(request.migration)
        await hosted.stop_validation(_kind(request.kind))
        return migrator_pb2.StopValidationResponse()


def _kind(number: int) -> Validation:
    kind = _KINDS.get(number)
    if kind is None:
        raise _field_error(
            "kind", "kind must be VALIDATION_KIND_FULL or VALIDATION_KIND_INCREMENTAL"
        )
    return kind


__all__ = [
    "DOMAIN",
    "STOPPED",
    "FixerCounts",
    "HostedFixer",
    "HostedMigration",
    "MigratorAdmin",
    "MigratorError",
    "MigratorFailedPrecondition",
    "MigratorInvalidArgument",
    "MigratorNotFound",
    "Reason",
    "ValidationRun",
    "ValidatorFactory",
]
