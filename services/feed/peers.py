"""The feed service's view of the follow service, and its gRPC adapter.

:class:`Followers` is what fan-out and reads need: a page of an author's followers (by the
follow service's own cursor, the relation id, newest first), an author's follower count, and
the users a reader follows. :class:`RemoteFollowers` asks the follow service through
:class:`kit.grpcx.client.ServiceClients` (discovery, balancing, governance) with a per-call
timeout; any failure (no instance, timeout, breaker open, refusal) becomes
:class:`~services.feed.errors.FeedUnavailable`, so a fan-out batch is retried later and a
read fails rather than silently leaving the big authors out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.feed.errors import FeedUnavailable, Reason
from webook.follow.v1 import follow_pb2, follow_pb2_grpc

if TYPE_CHECKING:
    from webook.follow.v1.follow_pb2_grpc import FollowServiceAsyncStub

logger = logging.getLogger(__name__)

FOLLOW_SERVICE: Final = "follow"
# The follow service's largest page.
FOLLOW_PAGE_MAX: Final = 100
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class FollowerPage:
    """Followers, and the cursor of the next page (0: this page was the last)."""

    uids: list[int]
    next_cursor: int


class Followers(Protocol):
    """The owner of follow relations."""

    async def followers(self, author: int, *, cursor: int, limit: int) -> FollowerPage:
        """A page of ``author``'s followers after ``cursor`` (0: from the start).

        Raises :class:`FeedUnavailable` when the follow service cannot be asked.
        """
        ...

    async def count(self, author: int) -> int:
        """How many followers ``author`` has (raises :class:`FeedUnavailable`)."""
        ...

    async def followees(self, reader: int, *, at_most: int) -> list[int]:
        """Up to ``at_most`` users ``reader`` follows, newest relation first (raises
        :class:`FeedUnavailable`)."""
        ...


def _unavailable(what: str, exc: BaseException) -> FeedUnavailable:
    if isinstance(exc, grpc.aio.AioRpcError):
        detail = f"{exc.code().name}: {exc.details()}"
    else:
        detail = repr(exc)
    logger.warning("peer call failed", extra={"call": what, "error": detail})
    return FeedUnavailable(Reason.UNAVAILABLE, f"{what} failed, please retry")


class RemoteFollowers:
    """:class:`Followers` on the follow service (``GetFollower``, ``GetFollowStatic``,
    ``GetFollowee``)."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def _stub(self, what: str) -> FollowServiceAsyncStub:
        try:
            return follow_pb2_grpc.FollowServiceStub(await self._clients.channel(FOLLOW_SERVICE))
        except _CALL_FAILURES as exc:
            raise _unavailable(what, exc) from exc

    async def followers(self, author: int, *, cursor: int, limit: int) -> FollowerPage:
        """``GetFollower`` pages (at most :data:`FOLLOW_PAGE_MAX` each) until ``limit``
        followers or the last page."""
        stub = await self._stub("follow GetFollower")
        uids: list[int] = []
        while True:
            try:
                answer = await stub.GetFollower(
                    follow_pb2.GetFollowerRequest(
                        followee=author,
                        min_id=cursor,
                        limit=min(FOLLOW_PAGE_MAX, limit - len(uids)),
                    ),
                    timeout=self._timeout,
                )
            except _CALL_FAILURES as exc:
                raise _unavailable("follow GetFollower", exc) from exc
            uids.extend(int(r.follower) for r in answer.relations)
            cursor = int(answer.next_cursor)
            if cursor == 0 or len(uids) >= limit:
                return FollowerPage(uids=uids, next_cursor=cursor)

    async def count(self, author: int) -> int:
        """``GetFollowStatic``'s follower count."""
        stub = await self._stub("follow GetFollowStatic")
        try:
            answer = await stub.GetFollowStatic(
                follow_pb2.GetFollowStaticRequest(uid=author), timeout=self._timeout
            )
        except _CALL_FAILURES as exc:
            raise _unavailable("follow GetFollowStatic", exc) from exc
        return int(answer.static.followers)

    async def followees(self, reader: int, *, at_most: int) -> list[int]:
        """``GetFollowee`` pages until ``at_most`` users or the last page."""
        stub = await self._stub("follow GetFollowee")
        found: list[int] = []
        cursor = 0
        while len(found) < at_most:
            try:
                answer = await stub.GetFollowee(
                    follow_pb2.GetFolloweeRequest(
                        follower=reader,
                        min_id=cursor,
                        limit=min(FOLLOW_PAGE_MAX, at_most - len(found)),
                    ),
                    timeout=self._timeout,
                )
            except _CALL_FAILURES as exc:
                raise _unavailable("follow GetFollowee", exc) from exc
            found.extend(int(r.followee) for r in answer.relations)
            cursor = int(answer.next_cursor)
            if cursor == 0:
                break
        return found[:at_most]
