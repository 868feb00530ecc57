"""Errors of the tag service, all in the ``tag.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.tag.v1``
(``protos/webook/tag/v1/tag.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument    → TagInvalidArgument     TAG_INVALID_USER, TAG_INVALID_NAME,
    │                                               TAG_INVALID_BIZ, TAG_INVALID_TAGS,
    │                                               TAG_INVALID_CURSOR, TAG_INVALID_LIMIT
    ├── FailedPrecondition → TagFailedPrecondition  TAG_TOO_MANY
    ├── NotFound           → TagNotFound            TAG_NOT_FOUND, TAG_TARGET_NOT_FOUND
    ├── PermissionDenied   → TagPermissionDenied    TAG_NOT_OWNER
    └── Unavailable        → TagUnavailable         TAG_UNAVAILABLE, TAG_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
    reason_names,
)
from webook.tag.v1 import tag_pb2


class TagError(ServiceError, reasons=tag_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.tag.v1.ErrorReason``."""


DOMAIN = TagError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the tag service (``webook.tag.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(tag_pb2.ErrorReason)

    INVALID_USER = auto()
    INVALID_NAME = auto()
    INVALID_BIZ = auto()
    INVALID_TAGS = auto()
    INVALID_CURSOR = auto()
    INVALID_LIMIT = auto()
    TOO_MANY = auto()
    NOT_FOUND = auto()
    TARGET_NOT_FOUND = auto()
    NOT_OWNER = auto()
    UNAVAILABLE = auto()
    CONCURRENT_CONFLICT = auto()


class TagInvalidArgument(TagError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class TagFailedPrecondition(TagError, FailedPrecondition):
    """The user already has as many tags as allowed."""


class TagNotFound(TagError, NotFound):
    """No such tag among the caller's, or no such resource."""


class TagPermissionDenied(TagError, PermissionDenied):
    """The caller does not own the resource it wants to tag."""


class TagUnavailable(TagError, Unavailable):
    """A peer could not be asked, or writes kept colliding; the caller may retry."""
