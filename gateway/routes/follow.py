"""``/follow``: follow, cancel, followee and follower lists, relation status, counts.

The routes reach the follow service through :func:`follow_stub`, which reads
``app.state.runtime.clients.follow`` (tests override the dependency). Following checks with
the user service that the followee exists (``USER_NOT_FOUND`` answers code 4 "user not
found"), since the follow service knows only ids. ``/follow/counts`` uses no identity and
may be made public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Security

from gateway.deps import PrincipalDep, RuntimeDep, access_token_scheme
from gateway.envelope import Ack, Result
from gateway.routes.comments import format_time
from gateway.schemas import INT64_MAX
from gateway.schemas.follow import (
    FollowCountsView,
    FollowPage,
    FollowRelationView,
    FollowStatusView,
    FollowTarget,
)
from webook.follow.v1 import follow_pb2
from webook.user.v1 import user_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence
    from zoneinfo import ZoneInfo

    from webook.follow.v1.follow_pb2_grpc import FollowServiceAsyncStub

_UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "Not logged in, token invalid or expired. Empty body."}
}

router = APIRouter(prefix="/follow", tags=["follow"])
logged_in = [Security(access_token_scheme)]


async def follow_stub(request: Request) -> FollowServiceAsyncStub:
    """The follow service stub opened by the gateway's lifespan (async: no thread hop)."""
    stub: FollowServiceAsyncStub = request.app.state.runtime.clients.follow
    return stub


FollowStubDep = Annotated["FollowServiceAsyncStub", Depends(follow_stub)]
UidQuery = Annotated[
    int, Query(ge=0, le=INT64_MAX, description="The user; 0 or absent = the caller.")
]
MinIdQuery = Annotated[
    int, Query(ge=0, le=INT64_MAX, description="Cursor from nextCursor; 0 = newest.")
]
LimitQuery = Annotated[int, Query(ge=1, le=100)]


def _page(
    relations: Sequence[follow_pb2.FollowRelation], next_cursor: int, zone: ZoneInfo
) -> FollowPage:
    return FollowPage(
        relations=[
            FollowRelationView(
                follower=r.follower, followee=r.followee, ctime=format_time(r.ctime_ms, zone)
            )
            for r in relations
        ],
        nextCursor=next_cursor,
    )


@router.post("/follow", summary="Follow a user", dependencies=logged_in, responses=_UNAUTHORIZED)
async def follow(
    body: FollowTarget, principal: PrincipalDep, runtime: RuntimeDep, stub: FollowStubDep
) -> Ack:
    """Idempotent; following oneself or an unknown user answers code 4."""
    await runtime.user.Profile(
        user_pb2.ProfileRequest(id=body.followee), timeout=runtime.grpc_timeout
    )
    await stub.Follow(
        follow_pb2.FollowRequest(follower=principal.uid, followee=body.followee),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.post(
    "/cancel", summary="Stop following a user", dependencies=logged_in, responses=_UNAUTHORIZED
)
async def cancel(
    body: FollowTarget, principal: PrincipalDep, runtime: RuntimeDep, stub: FollowStubDep
) -> Ack:
    """Idempotent: cancelling a follow that does not exist succeeds."""
    await stub.CancelFollow(
        follow_pb2.CancelFollowRequest(follower=principal.uid, followee=body.followee),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.get(
    "/followees", summary="Whom a user follows", dependencies=logged_in, responses=_UNAUTHORIZED
)
async def followees(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    stub: FollowStubDep,
    uid: UidQuery = 0,
    minId: MinIdQuery = 0,
    limit: LimitQuery = 20,
) -> Result[FollowPage]:
    """Newest relation first."""
    reply = await stub.GetFollowee(
        follow_pb2.GetFolloweeRequest(follower=uid or principal.uid, min_id=minId, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=_page(reply.relations, reply.next_cursor, runtime.settings.zone))


@router.get(
    "/followers", summary="Who follows a user", dependencies=logged_in, responses=_UNAUTHORIZED
)
async def followers(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    stub: FollowStubDep,
    uid: UidQuery = 0,
    minId: MinIdQuery = 0,
    limit: LimitQuery = 20,
) -> Result[FollowPage]:
    """Newest relation first."""
    reply = await stub.GetFollower(
        follow_pb2.GetFollowerRequest(followee=uid or principal.uid, min_id=minId, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=_page(reply.relations, reply.next_cursor, runtime.settings.zone))


@router.get(
    "/status",
    summary="Relation between the caller and a user",
    dependencies=logged_in,
    responses=_UNAUTHORIZED,
)
async def status(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    stub: FollowStubDep,
    uid: Annotated[int, Query(gt=0, le=INT64_MAX, description="The other user.")],
) -> Result[FollowStatusView]:
    """Whether the caller follows ``uid`` and whether ``uid`` follows the caller."""
    reply = await stub.FollowInfo(
        follow_pb2.FollowInfoRequest(follower=principal.uid, followee=uid),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=FollowStatusView(following=reply.following, followedBy=reply.followed_by))


@router.get("/counts", summary="Follower and followee counts of a user")
async def counts(
    runtime: RuntimeDep,
    stub: FollowStubDep,
    uid: Annotated[int, Query(gt=0, le=INT64_MAX)],
) -> Result[FollowCountsView]:
    """Counts kept by the follow service (cached), not counted on each request."""
    reply = await stub.GetFollowStatic(
        follow_pb2.GetFollowStaticRequest(uid=uid), timeout=runtime.grpc_timeout
    )
    s = reply.static
    return Result(data=FollowCountsView(uid=uid, followers=s.followers, followees=s.followees))
