"""gRPC servicer of ``webook.follow.v1.FollowService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.follow.service.FollowService` call;
refusals are :class:`kit.errors.AppError` subclasses that the server's error interceptor
turns into status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.follow.domain import FollowRelation
from services.follow.service import FollowService
from webook.follow.v1 import follow_pb2, follow_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def relation_to_proto(relation: FollowRelation) -> follow_pb2.FollowRelation:
    """The wire form of ``relation``."""
    return follow_pb2.FollowRelation(
        follower=relation.follower, followee=relation.followee, ctime_ms=relation.ctime_ms
    )


def next_cursor(relations: list[FollowRelation], limit: int) -> int:
    """The ``min_id`` of the next page; 0 when this page is the last (shorter than asked)."""
    if not relations or len(relations) < limit:
        return 0
    return relations[-1].id


class FollowServicer(follow_pb2_grpc.FollowServiceServicer):
    """Serves the follow service's RPCs on top of :class:`FollowService`."""

    def __init__(self, service: FollowService) -> None:
        self._service = service

    async def Follow(
        self, request: follow_pb2.FollowRequest, context: Context
    ) -> follow_pb2.FollowResponse:
        """Follow (idempotent)."""
        await self._service.follow(request.follower, request.followee)
        return follow_pb2.FollowResponse()

    async def CancelFollow(
        self, request: follow_pb2.CancelFollowRequest, context: Context
    ) -> follow_pb2.CancelFollowResponse:
        """Stop following (idempotent)."""
        await self._service.cancel(request.follower, request.followee)
        return follow_pb2.CancelFollowResponse()

    async def GetFollowee(
        self, request: follow_pb2.GetFolloweeRequest, context: Context
    ) -> follow_pb2.GetFolloweeResponse:
        """Whom a user follows, newest first, by cursor."""
        relations = await self._service.followees(
            request.follower, min_id=request.min_id, limit=request.limit
        )
        return follow_pb2.GetFolloweeResponse(
            relations=[relation_to_proto(r) for r in relations],
            next_cursor=next_cursor(relations, request.limit or 20),
        )

    async def GetFollower(
        self, request: follow_pb2.GetFollowerRequest, context: Context
    ) -> follow_pb2.GetFollowerResponse:
        """Who follows a user, newest first, by cursor."""
        relations = await self._service.followers(
            request.followee, min_id=request.min_id, limit=request.limit
        )
        return follow_pb2.GetFollowerResponse(
            relations=[relation_to_proto(r) for r in relations],
            next_cursor=next_cursor(relations, request.limit or 20),
        )

    async def FollowInfo(
        self, request: follow_pb2.FollowInfoRequest, context: Context
    ) -> follow_pb2.FollowInfoResponse:
        """The relation between two users."""
        status = await self._service.relation(request.follower, request.followee)
        return follow_pb2.FollowInfoResponse(
            following=status.following, followed_by=status.followed_by
        )

    async def GetFollowStatic(
        self, request: follow_pb2.GetFollowStaticRequest, context: Context
    ) -> follow_pb2.GetFollowStaticResponse:
        """Follower and followee counts of a user."""
        stats = await self._service.stats(request.uid)
        return follow_pb2.GetFollowStaticResponse(
            static=follow_pb2.FollowStatic(
                uid=stats.uid, followers=stats.followers, followees=stats.followees
            )
        )
