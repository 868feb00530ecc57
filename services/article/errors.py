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
    │                                                ARTICLE_INVALID_TIME_WINDOW
    ├── NotFound          → ArticleNotFound          ARTICLE_NOT_FOUND
    └── PermissionDenied  → ArticlePermissionDenied  ARTICLE_NOT_AUTHOR
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, NotFound, PermissionDenied, error_domain
from webook.article.v1 import article_pb2

DOMAIN = error_domain(article_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the article service (``webook.article.v1.ErrorReason``)."""

    INVALID_TITLE = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_INVALID_TITLE)
    INVALID_CONTENT = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_INVALID_CONTENT)
    INVALID_AUTHOR = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_INVALID_AUTHOR)
    INVALID_PAGE = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_INVALID_PAGE)
    INVALID_TIME_WINDOW = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_INVALID_TIME_WINDOW)
    NOT_FOUND = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_NOT_FOUND)
    NOT_AUTHOR = article_pb2.ErrorReason.Name(article_pb2.ARTICLE_NOT_AUTHOR)


class ArticleInvalidArgument(InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class ArticleNotFound(NotFound):
    """No article has the id, or (for readers) it is not published."""

    default_domain = DOMAIN


class ArticlePermissionDenied(PermissionDenied):
    """The caller is not the article's author."""

    default_domain = DOMAIN
