"""Errors of the comment service, all in the ``comment.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.comment.v1``
(``protos/webook/comment/v1/comment.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument   → CommentInvalidArgument   COMMENT_INVALID_CONTENT, COMMENT_INVALID_BIZ,
    │                                                COMMENT_INVALID_PAGE, COMMENT_TOO_MANY_IDS,
    │                                                COMMENT_PARENT_MISMATCH, COMMENT_INVALID_USER
    ├── NotFound          → CommentNotFound          COMMENT_NOT_FOUND, COMMENT_PARENT_NOT_FOUND
    ├── PermissionDenied  → CommentPermissionDenied  COMMENT_NOT_AUTHOR
    └── Unavailable       → CommentUnavailable       COMMENT_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable, error_domain
from webook.comment.v1 import comment_pb2

DOMAIN = error_domain(comment_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the comment service (``webook.comment.v1.ErrorReason``)."""

    INVALID_CONTENT = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_INVALID_CONTENT)
    INVALID_BIZ = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_INVALID_BIZ)
    INVALID_PAGE = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_INVALID_PAGE)
    INVALID_USER = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_INVALID_USER)
    TOO_MANY_IDS = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_TOO_MANY_IDS)
    PARENT_MISMATCH = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_PARENT_MISMATCH)
    NOT_FOUND = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_NOT_FOUND)
    PARENT_NOT_FOUND = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_PARENT_NOT_FOUND)
    NOT_AUTHOR = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_NOT_AUTHOR)
    CONCURRENT_CONFLICT = comment_pb2.ErrorReason.Name(comment_pb2.COMMENT_CONCURRENT_CONFLICT)


class CommentInvalidArgument(InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class CommentNotFound(NotFound):
    """The comment (or the parent replied to) does not exist."""

    default_domain = DOMAIN


class CommentPermissionDenied(PermissionDenied):
    """Only a comment's author may delete it."""

    default_domain = DOMAIN


class CommentUnavailable(Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""

    default_domain = DOMAIN
