"""Adapters to the services the ranking job reads: published articles and their likes.

Both call through :class:`kit.grpcx.client.ServiceClients` (discovery, balancing,
governance) with a per-call timeout; any failure (no instance, timeout, breaker open,
refusal) becomes :class:`~services.ranking.errors.RankingJobFailed`, so a run either sees
every batch or changes nothing.

- :class:`RemoteArticles`: article ``ListPub`` (published articles by update time, newest
  first, by offset);
- :class:`RemoteLikes`: interactive ``GetByIds`` (counts of up to 100 articles).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.ranking.errors import RankingJobFailed, Reason
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc

ARTICLE_BIZ: Final = "article"
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


def _failed(what: str, exc: BaseException) -> RankingJobFailed:
    detail = (
        f"{exc.code().name}: {exc.details()}"
        if isinstance(exc, grpc.aio.AioRpcError)
        else repr(exc)
    )
    return RankingJobFailed(Reason.JOB_FAILED, f"{what} failed: {detail}")


class RemoteArticles:
    """Published articles from the article service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def page(
        self, start_ms: int, end_ms: int, offset: int, limit: int
    ) -> Sequence[article_pb2.Article]:
        """Published articles updated in ``[start_ms, end_ms)``, newest first."""
        try:
            stub = article_pb2_grpc.ArticleServiceStub(await self._clients.channel("article"))
            answer = await stub.ListPub(
                article_pb2.ListPubRequest(
                    start_time_ms=start_ms, end_time_ms=end_ms, offset=offset, limit=limit
                ),
                timeout=self._timeout,
            )
        except _CALL_FAILURES as exc:
            raise _failed("article ListPub", exc) from exc
        return list(answer.articles)


class RemoteLikes:
    """Like counts from the interactive service."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def likes(self, article_ids: Sequence[int]) -> dict[int, int]:
        """Likes of each of ``article_ids`` (at most 100; absent ones count 0)."""
        if not article_ids:
            return {}
        try:
            stub = interactive_pb2_grpc.InteractiveServiceStub(
                await self._clients.channel("interactive")
            )
            answer = await stub.GetByIds(
                interactive_pb2.GetByIdsRequest(biz=ARTICLE_BIZ, biz_ids=list(article_ids)),
                timeout=self._timeout,
            )
        except _CALL_FAILURES as exc:
            raise _failed("interactive GetByIds", exc) from exc
        return {biz_id: int(intr.like_cnt) for biz_id, intr in answer.intrs.items()}
