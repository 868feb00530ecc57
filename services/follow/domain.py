"""Follow relations and counts as plain data, and the rules their input must follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.follow.errors import FollowInvalidArgument, Reason

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class FollowRelation:
    """``follower`` follows ``followee``; ``id`` is the list cursor."""

    id: int
    follower: int
    followee: int
    ctime_ms: int


@dataclass(frozen=True, slots=True)
class FollowStats:
    """How many users follow ``uid`` and how many ``uid`` follows."""

    uid: int
    followers: int
    followees: int


@dataclass(frozen=True, slots=True)
class RelationStatus:
    """The relation between two users, seen from the first."""

    following: bool
    followed_by: bool


def check_uid(uid: int, field_name: str) -> int:
    """A user id; zero and negative ids are refused."""
    if uid <= 0:
        raise FollowInvalidArgument(
            Reason.INVALID_USER, f"{field_name} must be a user id", metadata={"field": field_name}
        )
    return uid


def check_pair(follower: int, followee: int) -> None:
    """Refuse malformed ids and following oneself."""
    check_uid(follower, "follower")
    check_uid(followee, "followee")
    if follower == followee:
        raise FollowInvalidArgument(
            Reason.SELF, "you cannot follow yourself", metadata={"field": "followee"}
        )


def page(min_id: int, limit: int) -> tuple[int, int]:
    """A validated ``(cursor, size)``: limit 0 means the default, at most 100."""
    if min_id < 0:
        raise FollowInvalidArgument(
            Reason.INVALID_PAGE, "min_id cannot be negative", metadata={"field": "min_id"}
        )
    if limit == 0:
        return min_id, DEFAULT_PAGE_SIZE
    if limit < 0 or limit > MAX_PAGE_SIZE:
        raise FollowInvalidArgument(
            Reason.INVALID_PAGE, f"limit must be 1..{MAX_PAGE_SIZE}", metadata={"field": "limit"}
        )
    return min_id, limit
