"""Errors of the search service, all in the ``search.webook`` domain.

::

    kit.errors.AppError
    ├── InvalidArgument  → SearchInvalidArgument  SEARCH_INVALID_QUERY, SEARCH_INVALID_PAGE,
    │                                             SEARCH_INVALID_DOCUMENT
    └── Unavailable      → SearchUnavailable      SEARCH_INDEX_UNAVAILABLE,
                                                  SEARCH_SOURCE_UNAVAILABLE
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, Unavailable

DOMAIN = "search.webook"


class Reason(StrEnum):
    """Stable business reasons of the search service (the gateway maps these)."""

    INVALID_QUERY = "SEARCH_INVALID_QUERY"
    INVALID_PAGE = "SEARCH_INVALID_PAGE"
    INVALID_DOCUMENT = "SEARCH_INVALID_DOCUMENT"
    INDEX_UNAVAILABLE = "SEARCH_INDEX_UNAVAILABLE"
    # A reindex could not read the article or user service.
    SOURCE_UNAVAILABLE = "SEARCH_SOURCE_UNAVAILABLE"


class SearchInvalidArgument(InvalidArgument):
    """A query or a document breaks a rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class SearchUnavailable(Unavailable):
    """The index could not be read or written, or a reindex could not read its sources;
    the caller may retry."""

    default_domain = DOMAIN
