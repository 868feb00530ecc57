"""Errors of the article service, all in the ``article.webook`` domain.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`Reason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument   → ArticleInvalidArgument   ARTICLE_INVALID_TITLE,
    │                                                ARTICLE_INVALID_CONTENT,
    │                                                ARTICLE_INVALID_AUTHOR,
    │                                                ARTICLE_INVALID_PAGE,
    │                                                ARTICLE_INVALID_TIME_WINDOW
    ├── NotFound          → ArticleNotFound          ARTICLE_NOT_FOUND
    └── PermissionDenied  → ArticlePermissionDenied  ARTICLE_NOT_AUTHOR
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, NotFound, PermissionDenied

DOMAIN = "article.webook"


class Reason(StrEnum):
    """Stable business reasons of the article service (the gateway maps these)."""

    INVALID_TITLE = "ARTICLE_INVALID_TITLE"
    INVALID_CONTENT = "ARTICLE_INVALID_CONTENT"
    INVALID_AUTHOR = "ARTICLE_INVALID_AUTHOR"
    INVALID_PAGE = "ARTICLE_INVALID_PAGE"
    INVALID_TIME_WINDOW = "ARTICLE_INVALID_TIME_WINDOW"
    NOT_FOUND = "ARTICLE_NOT_FOUND"
    NOT_AUTHOR = "ARTICLE_NOT_AUTHOR"


class ArticleInvalidArgument(InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class ArticleNotFound(NotFound):
    """No article has the id, or (for readers) it is not published."""

    default_domain = DOMAIN


class ArticlePermissionDenied(PermissionDenied):
    """The caller is not the article's author."""

    default_domain = DOMAIN
