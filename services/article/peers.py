"""Adapters to the other services the article service asks: names and popularity.

Both talk gRPC through :class:`kit.grpcx.client.ServiceClients` (balanced, governed
channels) with a short per-call timeout, because they sit on the read path:

- :class:`UserServiceAuthors` implements ``AuthorDirectory`` with ``UserService.GetByIds``;
  author names are users' nicknames. Any failure (no instance, timeout, breaker open,
  refusal) becomes ``AuthorDirectoryUnavailable`` and the service serves without names.
- :class:`RemotePopularity` implements ``PopularityLookup`` with the follow service's
  ``GetFollowStatic`` (the author's followers) and the interactive service's ``Get`` (the
  article's reads), asked concurrently; whatever fails counts as zero, so the cache TTL
  policy falls back to its base lifetime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.article.domain import Popularity
from services.article.service import AuthorDirectoryUnavailable
from webook.follow.v1 import follow_pb2, follow_pb2_grpc
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc
from webook.user.v1 import user_pb2, user_pb2_grpc

logger = logging.getLogger(__name__)

ARTICLE_BIZ = "article"
DEFAULT_TIMEOUT_S = 0.5
# What a call to another service can fail with: a status, or no address configured at all.
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


class UserServiceAuthors:
    """Author names from the user service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def names(self, user_ids: Sequence[int]) -> dict[int, str]:
        """Nicknames of the existing users among ``user_ids`` (at most 100)."""
        try:
            stub = user_pb2_grpc.UserServiceStub(await self._clients.channel("user"))
            answer = await stub.GetByIds(
                user_pb2.GetByIdsRequest(ids=list(user_ids)), timeout=self._timeout
            )
        except _CALL_FAILURES as exc:
            raise AuthorDirectoryUnavailable(_describe(exc)) from exc
        return {user_id: user.nickname for user_id, user in answer.users.items()}


class RemotePopularity:
    """Followers from the follow service and reads from the interactive service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def popularity(self, author_id: int, article_id: int) -> Popularity:
        """The author's followers and the article's reads; zero for what cannot be asked."""
        followers, reads = await asyncio.gather(self._followers(author_id), self._reads(article_id))
        return Popularity(followers=followers, reads=reads)

    async def _followers(self, author_id: int) -> int:
        try:
            stub = follow_pb2_grpc.FollowServiceStub(await self._clients.channel("follow"))
            answer = await stub.GetFollowStatic(
                follow_pb2.GetFollowStaticRequest(uid=author_id), timeout=self._timeout
            )
        except _CALL_FAILURES as exc:
            logger.debug("follower count unavailable", extra={"error": _describe(exc)})
            return 0
        return int(answer.static.followers)

    async def _reads(self, article_id: int) -> int:
        try:
            stub = interactive_pb2_grpc.InteractiveServiceStub(
                await self._clients.channel("interactive")
            )
            answer = await stub.Get(
                interactive_pb2.GetRequest(biz=ARTICLE_BIZ, biz_id=article_id),
                timeout=self._timeout,
            )
        except _CALL_FAILURES as exc:
            logger.debug("read count unavailable", extra={"error": _describe(exc)})
            return 0
        return int(answer.intr.read_cnt)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)
