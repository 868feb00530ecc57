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

from enum import StrEnum

from kit.errors import InvalidArgument, Unavailable, error_domain
from webook.follow.v1 import follow_pb2

DOMAIN = error_domain(follow_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the follow service (``webook.follow.v1.ErrorReason``)."""

    INVALID_USER = follow_pb2.ErrorReason.Name(follow_pb2.FOLLOW_INVALID_USER)
    SELF = follow_pb2.ErrorReason.Name(follow_pb2.FOLLOW_SELF)
    INVALID_PAGE = follow_pb2.ErrorReason.Name(follow_pb2.FOLLOW_INVALID_PAGE)
    CONCURRENT_CONFLICT = follow_pb2.ErrorReason.Name(follow_pb2.FOLLOW_CONCURRENT_CONFLICT)


class FollowInvalidArgument(InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class FollowUnavailable(Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""

    default_domain = DOMAIN
