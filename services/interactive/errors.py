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
    └── Unavailable     → InteractiveUnavailable      INTERACTIVE_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, Unavailable, error_domain
from webook.interactive.v1 import interactive_pb2

DOMAIN = error_domain(interactive_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the interactive service (``interactive.v1.ErrorReason``)."""

    INVALID_BIZ = interactive_pb2.ErrorReason.Name(interactive_pb2.INTERACTIVE_INVALID_BIZ)
    INVALID_BIZ_ID = interactive_pb2.ErrorReason.Name(interactive_pb2.INTERACTIVE_INVALID_BIZ_ID)
    INVALID_USER = interactive_pb2.ErrorReason.Name(interactive_pb2.INTERACTIVE_INVALID_USER)
    INVALID_COLLECTION = interactive_pb2.ErrorReason.Name(
        interactive_pb2.INTERACTIVE_INVALID_COLLECTION
    )
    TOO_MANY_IDS = interactive_pb2.ErrorReason.Name(interactive_pb2.INTERACTIVE_TOO_MANY_IDS)
    CONCURRENT_CONFLICT = interactive_pb2.ErrorReason.Name(
        interactive_pb2.INTERACTIVE_CONCURRENT_CONFLICT
    )


class InteractiveInvalidArgument(InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class InteractiveUnavailable(Unavailable):
    """A write kept colliding with concurrent writes (deadlocks); the caller may retry."""

    default_domain = DOMAIN
