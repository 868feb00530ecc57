"""Models of the ``/follow`` routes (camelCase wire names, as the rest of the API)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.schemas import INT64_MAX, RequestModel


class FollowTarget(RequestModel):
    """The user to follow or stop following."""

    followee: int = Field(gt=0, le=INT64_MAX, description="Id of the user to (un)follow.")


class FollowRelationView(BaseModel):
    """``follower`` follows ``followee`` since ``ctime``."""

    follower: int
    followee: int
    ctime: str = Field(description="YYYY-MM-DD HH:MM:SS in the server's zone.")


class FollowPage(BaseModel):
    """A page of relations; pass ``nextCursor`` as ``minId`` for the next one (0 = end)."""

    relations: list[FollowRelationView]
    nextCursor: int


class FollowStatusView(BaseModel):
    """The relation between the caller and another user."""

    following: bool = Field(description="The caller follows the user.")
    followedBy: bool = Field(description="The user follows the caller.")


class FollowCountsView(BaseModel):
    """Follower and followee counts of a user."""

    uid: int
    followers: int
    followees: int
