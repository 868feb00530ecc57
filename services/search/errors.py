"""Errors of the search service, all in the ``search.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.search.v1``
(``protos/webook/search/v1/search.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → SearchInvalidArgument  SEARCH_INVALID_QUERY, SEARCH_INVALID_PAGE,
    │                                             SEARCH_INVALID_DOCUMENT
    └── Unavailable      → SearchUnavailable      SEARCH_INDEX_UNAVAILABLE,
                                                  SEARCH_SOURCE_UNAVAILABLE
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, ServiceError, Unavailable, reason_names
from webook.search.v1 import search_pb2


class SearchError(ServiceError, reasons=search_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.search.v1.ErrorReason``."""


DOMAIN = SearchError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the search service (``webook.search.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(search_pb2.ErrorReason)

    INVALID_QUERY = auto()
    INVALID_PAGE = auto()
    INVALID_DOCUMENT = auto()
    INDEX_UNAVAILABLE = auto()
    # A reindex could not read the article or user service.
    SOURCE_UNAVAILABLE = auto()


class SearchInvalidArgument(SearchError, InvalidArgument):
    """A query or a document breaks a rule; ``metadata["field"]`` names the field."""


class SearchUnavailable(SearchError, Unavailable):
    """The index could not be read or written, or a reindex could not read its sources;
    the caller may retry."""
