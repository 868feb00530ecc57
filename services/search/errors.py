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

from enum import StrEnum

from kit.errors import InvalidArgument, Unavailable, error_domain
from webook.search.v1 import search_pb2

DOMAIN = error_domain(search_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the search service (``webook.search.v1.ErrorReason``)."""

    INVALID_QUERY = search_pb2.ErrorReason.Name(search_pb2.SEARCH_INVALID_QUERY)
    INVALID_PAGE = search_pb2.ErrorReason.Name(search_pb2.SEARCH_INVALID_PAGE)
    INVALID_DOCUMENT = search_pb2.ErrorReason.Name(search_pb2.SEARCH_INVALID_DOCUMENT)
    INDEX_UNAVAILABLE = search_pb2.ErrorReason.Name(search_pb2.SEARCH_INDEX_UNAVAILABLE)
    # A reindex could not read the article or user service.
    SOURCE_UNAVAILABLE = search_pb2.ErrorReason.Name(search_pb2.SEARCH_SOURCE_UNAVAILABLE)


class SearchInvalidArgument(InvalidArgument):
    """A query or a document breaks a rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class SearchUnavailable(Unavailable):
    """The index could not be read or written, or a reindex could not read its sources;
    the caller may retry."""

    default_domain = DOMAIN
