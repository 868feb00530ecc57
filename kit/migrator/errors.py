"""Errors of the migration admin API, all in the ``migrator.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.migrator.v1``
(``protos/webook/migrator/v1/migrator.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── NotFound            → MigratorNotFound            MIGRATOR_UNKNOWN_MIGRATION
    ├── FailedPrecondition  → MigratorFailedPrecondition  MIGRATOR_MODE_REFUSED,
    │                                                     MIGRATOR_ALREADY_RUNNING
    ├── InvalidArgument     → MigratorInvalidArgument     MIGRATOR_INVALID_ARGUMENT
    └── Unavailable         → MigratorUnavailable         MIGRATOR_MODE_SWITCHING

``MigratorUnavailable`` is the one error the double write itself raises (a unit of work
that waited its bound at the ``switching`` barrier, :class:`kit.migrator.ModeSwitching`):
it reaches the callers of the service hosting the migration as UNAVAILABLE, retryable.
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
    reason_names,
)
from webook.migrator.v1 import migrator_pb2


class MigratorError(ServiceError, reasons=migrator_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.migrator.v1.ErrorReason``."""


DOMAIN = MigratorError.default_domain


class Reason(StrEnum):
    """Reasons of the admin API's errors (``webook.migrator.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(migrator_pb2.ErrorReason)

    UNKNOWN_MIGRATION = auto()
    MODE_REFUSED = auto()
    ALREADY_RUNNING = auto()
    INVALID_ARGUMENT = auto()
    MODE_SWITCHING = auto()


class MigratorNotFound(MigratorError, NotFound):
    """The process hosts no migration of that name."""


class MigratorFailedPrecondition(MigratorError, FailedPrecondition):
    """The migration's state refuses the request (a skipped step, a run already going)."""


class MigratorInvalidArgument(MigratorError, InvalidArgument):
    """A field of the request is not valid; ``metadata["field"]`` names it."""


class MigratorUnavailable(MigratorError, Unavailable):
    """The migration cannot serve the request now; the caller may retry."""
