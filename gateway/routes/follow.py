"""``/follow``: follow, cancel, followee and follower lists, relation status, counts.

The routes reach the follow service through :attr:`gateway.deps.Runtime.stubs`; the
answers are built by :mod:`gateway.presenters`. Following checks with
the user service that the followee exists (``USER_NOT_FOUND`` answers code 4 "user not
found"), since the follow service knows only ids. ``/follow/counts`` uses no identity and
may be made public.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gateway import presenters
from gateway.auth.principal import Principal
from gateway.deps import LOGGED_IN, NOT_LOGGED_IN, PrincipalDep, RuntimeDep
from gateway.envelope import Ack, Result
from gateway.schemas import INT64_MAX, DecimalInt
from gateway.schemas.follow import FollowCountsView, FollowPage, FollowStatusView, FollowTarget
from webook.follow.v1 import follow_pb2
from webook.user.v1 import user_pb2

router = APIRouter(prefix="/follow", tags=["follow"])


class RelationsQuery:
    """The query of a relation list: whose (0 or absent: the caller's) and which page."""

    def __init__(
        self,
        uid: Annotated[
            DecimalInt, Query(ge=0, le=INT64_MAX, description="The user; 0 or absent = the caller.")
        ] = 0,
        minId: Annotated[
            DecimalInt, Query(ge=0, le=INT64_MAX, description="Cursor from nextCursor; 0 = newest.")
        ] = 0,
        limit: Annotated[DecimalInt, Query(ge=1, le=100)] = 20,
    ) -> None:
        self.uid = uid
        self.min_id = minId
        self.limit = limit

    def followees_of(self, caller: Principal) -> follow_pb2.GetFolloweeRequest:
        """The request for whom the user follows."""
        return follow_pb2.GetFolloweeRequest(
            follower=self.uid or caller.uid, min_id=self.min_id, limit=self.limit
        )

    def followers_of(self, caller: Principal) -> follow_pb2.GetFollowerRequest:
        """The request for who follows the user."""
        return follow_pb2.GetFollowerRequest(
            followee=self.uid or caller.uid, min_id=self.min_id, limit=self.limit
        )


RelationsQueryDep = Annotated[RelationsQuery, Depends()]


@router.post("/follow", summary="Follow a user", dependencies=LOGGED_IN, responses=NOT_LOGGED_IN)
async def follow(body: FollowTarget, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Idempotent; following oneself or an unknown user answers code 4."""
    await runtime.stubs.user.Profile(
        user_pb2.ProfileRequest(id=body.followee), timeout=runtime.grpc_timeout
    )
    await runtime.stubs.follow.Follow(
        follow_pb2.FollowRequest(follower=principal.uid, followee=body.followee),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.post(
    "/cancel", summary="Stop following a user", dependencies=LOGGED_IN, responses=NOT_LOGGED_IN
)
async def cancel(body: FollowTarget, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Idempotent: cancelling a follow that does not exist succeeds."""
    await runtime.stubs.follow.CancelFollow(
        follow_pb2.CancelFollowRequest(follower=principal.uid, followee=body.followee),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.get(
    "/followees", summary="Whom a user follows", dependencies=LOGGED_IN, responses=NOT_LOGGED_IN
)
async def followees(
    page: RelationsQueryDep, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[FollowPage]:
    """Newest relation first."""
    reply = await runtime.stubs.follow.GetFollowee(
        page.followees_of(principal), timeout=runtime.grpc_timeout
    )
    return Result(data=presenters.follow_page(reply, runtime.settings.zone))


@router.get(
    "/followers", summary="Who follows a user", dependencies=LOGGED_IN, responses=NOT_LOGGED_IN
)
async def followers(
    page: RelationsQueryDep, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[FollowPage]:
    """Newest relation first."""
    reply = await runtime.stubs.follow.GetFollower(
        page.followers_of(principal), timeout=runtime.grpc_timeout
    )
    return Result(data=presenters.follow_page(reply, runtime.settings.zone))


@router.get(
    "/status",
    summary="Relation between the caller and a user",
    dependencies=LOGGED_IN,
    responses=NOT_LOGGED_IN,
)
async def status(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    uid: Annotated[DecimalInt, Query(gt=0, le=INT64_MAX, description="The other user.")],
) -> Result[FollowStatusView]:
    """Whether the caller follows ``uid`` and whether ``uid`` follows the caller."""
    reply = await runtime.stubs.follow.FollowInfo(
        follow_pb2.FollowInfoRequest(follower=principal.uid, followee=uid),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=FollowStatusView(following=reply.following, followedBy=reply.followed_by))


@router.get("/counts", summary="Follower and followee counts of a user")
async def counts(
    runtime: RuntimeDep,
    uid: Annotated[DecimalInt, Query(gt=0, le=INT64_MAX)],
) -> Result[FollowCountsView]:
    """Counts kept by the follow service (cached), not counted on each request."""
    reply = await runtime.stubs.follow.GetFollowStatic(
        follow_pb2.GetFollowStaticRequest(uid=uid), timeout=runtime.grpc_timeout
    )
    return Result(data=presenters.follow_counts(uid, reply.static))
