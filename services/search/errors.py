"""Errors of the search service, all in the ``search.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.search.v1``
(``protos/webook/search/v1/search.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → SearchInvalidArgument  SEARCH_INVALID_QUERY, SEARCH_INVALID_PAGE,
    │                                             SEARCH_INVALID_DOCUMENT
    ├── NotFound         → SearchNotFound         SEARCH_INDEX_UNAVAILABLE (a snapshot)
    └── Unavailable      → SearchUnavailable      SEARCH_INDEX_UNAVAILABLE,
                                                  SEARCH_SOURCE_UNAVAILABLE

The snapshot RPCs (:mod:`services.search.snapshot`) reuse these reasons: a malformed
snapshot id or file name is ``SEARCH_INVALID_DOCUMENT`` and a negative read position or size
``SEARCH_INVALID_PAGE`` (INVALID_ARGUMENT); a snapshot that is unknown or expired, or a file
that is not one of it, is NOT_FOUND with ``SEARCH_INDEX_UNAVAILABLE``: that copy of the
index cannot be read (the proto declares no reason of its own for it).
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, NotFound, ServiceError, Unavailable, reason_names
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


class SearchNotFound(SearchError, NotFound):
    """A snapshot (or a file of it) that does not exist here, or no longer: it expired."""
