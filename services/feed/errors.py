"""Errors of the feed service, all in the ``feed.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.feed.v1``
(``protos/webook/feed/v1/feed.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → FeedInvalidArgument  FEED_INVALID_USER, FEED_INVALID_CURSOR,
    │                                           FEED_INVALID_LIMIT
    └── Unavailable      → FeedUnavailable      FEED_UNAVAILABLE, FEED_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, ServiceError, Unavailable, reason_names
from webook.feed.v1 import feed_pb2


class FeedError(ServiceError, reasons=feed_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.feed.v1.ErrorReason``."""


DOMAIN = FeedError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the feed service (``webook.feed.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(feed_pb2.ErrorReason)

    INVALID_USER = auto()
    INVALID_CURSOR = auto()
    INVALID_LIMIT = auto()
    UNAVAILABLE = auto()
    CONCURRENT_CONFLICT = auto()


class FeedInvalidArgument(FeedError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class FeedUnavailable(FeedError, Unavailable):
    """The follow service could not be asked, or writes kept colliding; the caller may retry."""
