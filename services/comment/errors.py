"""Errors of the comment service, all in the ``comment.webook`` domain.

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

from kit.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

DOMAIN = "comment.webook"


class Reason(StrEnum):
    """Stable business reasons of the comment service (the gateway maps these)."""

    INVALID_CONTENT = "COMMENT_INVALID_CONTENT"
    INVALID_BIZ = "COMMENT_INVALID_BIZ"
    INVALID_PAGE = "COMMENT_INVALID_PAGE"
    INVALID_USER = "COMMENT_INVALID_USER"
    TOO_MANY_IDS = "COMMENT_TOO_MANY_IDS"
    PARENT_MISMATCH = "COMMENT_PARENT_MISMATCH"
    NOT_FOUND = "COMMENT_NOT_FOUND"
    PARENT_NOT_FOUND = "COMMENT_PARENT_NOT_FOUND"
    NOT_AUTHOR = "COMMENT_NOT_AUTHOR"
    CONCURRENT_CONFLICT = "COMMENT_CONCURRENT_CONFLICT"


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
