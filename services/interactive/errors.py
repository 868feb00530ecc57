"""Errors of the interactive service, all in the ``interactive.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.interactive.v1``
(``protos/webook/interactive/v1/interactive.proto``); a reason is a value's name.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`Reason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument → InteractiveInvalidArgument  INTERACTIVE_INVALID_BIZ,
    │                                                 INTERACTIVE_INVALID_BIZ_ID,
    │                                                 INTERACTIVE_INVALID_USER,
    │                                                 INTERACTIVE_INVALID_COLLECTION,
    │                                                 INTERACTIVE_TOO_MANY_IDS
    ├── NotFound        → InteractiveNotFound         INTERACTIVE_TARGET_NOT_FOUND
    └── Unavailable     → InteractiveUnavailable      INTERACTIVE_CONCURRENT_CONFLICT,
                                                      INTERACTIVE_TARGET_UNAVAILABLE
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, NotFound, ServiceError, Unavailable, reason_names
from webook.interactive.v1 import interactive_pb2


class InteractiveError(ServiceError, reasons=interactive_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.interactive.v1.ErrorReason``."""


DOMAIN = InteractiveError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the interactive service (``interactive.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(interactive_pb2.ErrorReason)

    INVALID_BIZ = auto()
    INVALID_BIZ_ID = auto()
    INVALID_USER = auto()
    INVALID_COLLECTION = auto()
    TOO_MANY_IDS = auto()
    CONCURRENT_CONFLICT = auto()
    TARGET_NOT_FOUND = auto()
    TARGET_UNAVAILABLE = auto()


class InteractiveInvalidArgument(InteractiveError, InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""


class InteractiveNotFound(InteractiveError, NotFound):
    """The object to like or collect does not exist (an article: is not published)."""


class InteractiveUnavailable(InteractiveError, Unavailable):
    """A write kept colliding with concurrent writes (deadlocks), or whether its object
    exists could not be checked; the caller may retry."""
