"""Errors of the scheduler service, all in the ``scheduler.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of
``webook.scheduler.v1`` (``protos/webook/scheduler/v1/scheduler.proto``); a reason is a
value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → SchedulerInvalidArgument  SCHEDULER_INVALID_CRON,
    │                                                SCHEDULER_UNKNOWN_EXECUTOR,
    │                                                SCHEDULER_INVALID_JOB
    ├── NotFound         → SchedulerNotFound         SCHEDULER_JOB_NOT_FOUND
    ├── AlreadyExists    → SchedulerAlreadyExists    SCHEDULER_JOB_EXISTS
    └── Unavailable      → SchedulerUnavailable      SCHEDULER_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
    reason_names,
)
from webook.scheduler.v1 import scheduler_pb2


class SchedulerError(ServiceError, reasons=scheduler_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.scheduler.v1.ErrorReason``."""


DOMAIN = SchedulerError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the scheduler service (``webook.scheduler.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(scheduler_pb2.ErrorReason)

    INVALID_CRON = auto()
    UNKNOWN_EXECUTOR = auto()
    INVALID_JOB = auto()
    JOB_NOT_FOUND = auto()
    JOB_EXISTS = auto()
    CONCURRENT_CONFLICT = auto()


class SchedulerInvalidArgument(SchedulerError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class SchedulerNotFound(SchedulerError, NotFound):
    """No job has this name."""


class SchedulerAlreadyExists(SchedulerError, AlreadyExists):
    """A job with this name exists."""


class SchedulerUnavailable(SchedulerError, Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""
