"""Errors of the scheduler service, all in the ``scheduler.webook`` domain.

The other services declare their reasons in their proto's ``ErrorReason`` enum
(:class:`kit.errors.ServiceError`); the scheduler has no proto yet (its gRPC admin API is
the next increment, docs/scheduler.md), so its reasons are spelled here, with the same
``SCHEDULER_`` prefix the enum will declare.

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

from enum import StrEnum
from typing import ClassVar

from kit.errors import AlreadyExists, AppError, InvalidArgument, NotFound, Unavailable


class SchedulerError(AppError):
    """Base of every error of the scheduler service."""

    default_domain: ClassVar[str] = "scheduler.webook"


DOMAIN = SchedulerError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the scheduler service."""

    INVALID_CRON = "SCHEDULER_INVALID_CRON"
    UNKNOWN_EXECUTOR = "SCHEDULER_UNKNOWN_EXECUTOR"
    INVALID_JOB = "SCHEDULER_INVALID_JOB"
    JOB_NOT_FOUND = "SCHEDULER_JOB_NOT_FOUND"
    JOB_EXISTS = "SCHEDULER_JOB_EXISTS"
    CONCURRENT_CONFLICT = "SCHEDULER_CONCURRENT_CONFLICT"


class SchedulerInvalidArgument(SchedulerError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class SchedulerNotFound(SchedulerError, NotFound):
    """No job has this name."""


class SchedulerAlreadyExists(SchedulerError, AlreadyExists):
    """A job with this name exists."""


class SchedulerUnavailable(SchedulerError, Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""
