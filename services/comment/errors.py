"""Errors of the comment service, all in the ``comment.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.comment.v1``
(``protos/webook/comment/v1/comment.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument   → CommentInvalidArgument   COMMENT_INVALID_CONTENT, COMMENT_INVALID_BIZ,
    │                                                COMMENT_INVALID_PAGE, COMMENT_TOO_MANY_IDS,
    │                                                COMMENT_PARENT_MISMATCH, COMMENT_INVALID_USER
    ├── NotFound          → CommentNotFound          COMMENT_NOT_FOUND, COMMENT_PARENT_NOT_FOUND,
    │                                                COMMENT_TARGET_NOT_FOUND
    ├── PermissionDenied  → CommentPermissionDenied  COMMENT_NOT_AUTHOR
    └── Unavailable       → CommentUnavailable       COMMENT_CONCURRENT_CONFLICT,
                                                     COMMENT_TARGET_UNAVAILABLE
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
    reason_names,
)
from webook.comment.v1 import comment_pb2


class CommentError(ServiceError, reasons=comment_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.comment.v1.ErrorReason``."""


DOMAIN = CommentError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the comment service (``webook.comment.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(comment_pb2.ErrorReason)

    INVALID_CONTENT = auto()
    INVALID_BIZ = auto()
    INVALID_PAGE = auto()
    INVALID_USER = auto()
    TOO_MANY_IDS = auto()
    PARENT_MISMATCH = auto()
    NOT_FOUND = auto()
    PARENT_NOT_FOUND = auto()
    NOT_AUTHOR = auto()
    CONCURRENT_CONFLICT = auto()
    TARGET_NOT_FOUND = auto()
    TARGET_UNAVAILABLE = auto()


class CommentInvalidArgument(CommentError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class CommentNotFound(CommentError, NotFound):
    """The comment, the parent replied to, or the object commented on does not exist."""


class CommentPermissionDenied(CommentError, PermissionDenied):
    """Only a comment's author may delete it."""


class CommentUnavailable(CommentError, Unavailable):
    """A write kept colliding with concurrent writes, or whether the object commented on
    exists could not be checked; the caller may retry."""
