"""Errors of the follow service, all in the ``follow.webook`` domain.

::

    kit.errors.AppError
    ├── InvalidArgument  → FollowInvalidArgument  FOLLOW_INVALID_USER, FOLLOW_SELF,
    │                                             FOLLOW_INVALID_PAGE
    └── Unavailable      → FollowUnavailable      FOLLOW_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import InvalidArgument, Unavailable

DOMAIN = "follow.webook"


class Reason(StrEnum):
    """Stable business reasons of the follow service (the gateway maps these)."""

    INVALID_USER = "FOLLOW_INVALID_USER"
    SELF = "FOLLOW_SELF"
    INVALID_PAGE = "FOLLOW_INVALID_PAGE"
    CONCURRENT_CONFLICT = "FOLLOW_CONCURRENT_CONFLICT"


class FollowInvalidArgument(InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class FollowUnavailable(Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""

    default_domain = DOMAIN
