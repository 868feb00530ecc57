"""Errors of the article service, all in the ``article.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.article.v1``
(``protos/webook/article/v1/article.proto``); a reason is a value's name.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`Reason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument   → ArticleInvalidArgument   ARTICLE_INVALID_TITLE,
    │                                                ARTICLE_INVALID_CONTENT,
    │                                                ARTICLE_INVALID_AUTHOR,
    │                                                ARTICLE_INVALID_PAGE,
    │                                                ARTICLE_INVALID_TIME_WINDOW,
    │                                                ARTICLE_TOO_MANY_IDS
    ├── NotFound          → ArticleNotFound          ARTICLE_NOT_FOUND
    └── PermissionDenied  → ArticlePermissionDenied  ARTICLE_NOT_AUTHOR
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, NotFound, PermissionDenied, ServiceError, reason_names
from webook.article.v1 import article_pb2


class ArticleError(ServiceError, reasons=article_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.article.v1.ErrorReason``."""


DOMAIN = ArticleError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the article service (``webook.article.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(article_pb2.ErrorReason)

    INVALID_TITLE = auto()
    INVALID_CONTENT = auto()
    INVALID_AUTHOR = auto()
    INVALID_PAGE = auto()
    INVALID_TIME_WINDOW = auto()
    NOT_FOUND = auto()
    NOT_AUTHOR = auto()
    TOO_MANY_IDS = auto()


class ArticleInvalidArgument(ArticleError, InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""


class ArticleNotFound(ArticleError, NotFound):
    """No article has the id, or (for readers) it is not published."""


class ArticlePermissionDenied(ArticleError, PermissionDenied):
    """The caller is not the article's author."""
