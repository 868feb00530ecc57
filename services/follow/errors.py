"""Errors of the follow service, all in the ``follow.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.follow.v1``
(``protos/webook/follow/v1/follow.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → FollowInvalidArgument  FOLLOW_INVALID_USER, FOLLOW_SELF,
    │                                             FOLLOW_INVALID_PAGE
    └── Unavailable      → FollowUnavailable      FOLLOW_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, ServiceError, Unavailable, reason_names
from webook.follow.v1 import follow_pb2


class FollowError(ServiceError, reasons=follow_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.follow.v1.ErrorReason``."""


DOMAIN = FollowError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the follow service (``webook.follow.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(follow_pb2.ErrorReason)

    INVALID_USER = auto()
    SELF = auto()
    INVALID_PAGE = auto()
    CONCURRENT_CONFLICT = auto()


class FollowInvalidArgument(FollowError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class FollowUnavailable(FollowError, Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""
