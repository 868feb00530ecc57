"""Non-stop table migration: move a live table to another database without downtime and
without losing or corrupting a row.

- :mod:`~kit.migrator.mode`: the four double-write modes and the ``switching`` barrier
  between the two "first" ones (:class:`Mode`), and the :class:`ModeHolder` switched at run
  time (``set``, or ``follow`` a live value), which counts the units of work in flight;
- :mod:`~kit.migrator.double_write`: :class:`DoubleWriter` and its unit of work, which
  writes the first side in the caller's transaction and copies the touched rows' images
  to the second side after the commit (a second-side failure never fails the caller);
- :mod:`~kit.migrator.validator`: :class:`Validator`, full (key ranges) and incremental
  (update time) comparison in either :class:`Direction`, throttled, checkpointed
  (:mod:`~kit.migrator.checkpoints`), each difference published on a Kafka topic;
- :mod:`~kit.migrator.fixer`: :class:`Fixer`, the consumer that repairs the target from the
  base side as it is at repair time;
- :mod:`~kit.migrator.tables`: :class:`MigratedTable` and the row images both copy;
- :mod:`~kit.migrator.admin`: :class:`MigratorAdmin`, the ``MigratorService`` admin API over
  the :class:`HostedMigration` objects of a process (mode, validations, :class:`HostedFixer`).

Guarantees, limits and usage: ``docs/migration.md``. Metrics: :mod:`kit.migrator.metrics`.
"""

from kit.migrator.admin import HostedFixer, HostedMigration, MigratorAdmin, ValidatorFactory
from kit.migrator.checkpoints import CHECKPOINT_TABLE, Checkpoint, CheckpointStore
from kit.migrator.double_write import (
    DoubleWriter,
    DoubleWriteUnitOfWork,
    Sessions,
    Sides,
    TableWriter,
)
from kit.migrator.fixer import Fixer
from kit.migrator.mode import Mode, ModeHolder, ModeRefused, ModeSwitching, Side, parse_mode
from kit.migrator.tables import Key, MigratedTable, Row, apply_images, read_images
from kit.migrator.validator import (
    Difference,
    DifferenceKind,
    DifferenceSink,
    DifferencesNotPublished,
    Direction,
    KafkaDifferenceSink,
    Validation,
    ValidationReport,
    Validator,
    ValidatorConfig,
    difference_topic,
)

__all__ = [
    "CHECKPOINT_TABLE",
    "Checkpoint",
    "CheckpointStore",
    "Difference",
    "DifferenceKind",
    "DifferenceSink",
    "DifferencesNotPublished",
    "Direction",
    "DoubleWriteUnitOfWork",
    "DoubleWriter",
    "Fixer",
    "HostedFixer",
    "HostedMigration",
    "KafkaDifferenceSink",
    "Key",
    "MigratedTable",
    "MigratorAdmin",
    "Mode",
    "ModeHolder",
    "ModeRefused",
    "ModeSwitching",
    "Row",
    "Sessions",
    "Side",
    "Sides",
    "TableWriter",
    "Validation",
    "ValidationReport",
    "Validator",
    "ValidatorConfig",
    "ValidatorFactory",
    "apply_images",
    "difference_topic",
    "parse_mode",
    "read_images",
]
