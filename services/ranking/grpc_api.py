"""gRPC servicer of ``webook.ranking.v1.RankingService``: proto ↔ domain translation only.

``TopArticles`` reads this replica's memory (:class:`~services.ranking.memory.LocalRanking`),
never Redis; ``RunRanking`` runs the job (:class:`~services.ranking.job.RankingJob`) under the
caller's fencing token, sent in metadata (:mod:`kit.grpcx.fencing`, as the scheduler's
``grpc`` executor does) or in the request. Refusals are :class:`kit.errors.AppError`
subclasses that the server's error interceptor turns into status codes with a
``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from kit.grpcx.fencing import call_token
from services.ranking.domain import RankedArticle, make_page
from services.ranking.errors import RankingInvalidArgument, Reason
from services.ranking.job import RankingJob
from services.ranking.memory import LocalRanking
from webook.ranking.v1 import ranking_pb2, ranking_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def article_to_proto(article: RankedArticle) -> ranking_pb2.RankedArticle:
    """The wire form of ``article``."""
    return ranking_pb2.RankedArticle(
        id=article.id,
        title=article.title,
        abstract=article.abstract,
        author_id=article.author_id,
        author_name=article.author_name,
        like_cnt=article.like_cnt,
        utime_ms=article.utime_ms,
        score=article.score,
    )


def run_token(request: ranking_pb2.RunRankingRequest, context: Context) -> int:
    """The fencing token of a ``RunRanking`` call: the ``webook-fencing-token`` metadata (the
    scheduler's ``grpc`` executor sends it) or the request's ``fencing_token``; both may be
    set only to the same value. 0 when neither is (the job refuses it)."""

    def refuse(message: str, field: str) -> Exception:
        return RankingInvalidArgument(
            Reason.INVALID_FENCING_TOKEN, message, metadata={"field": field}
        )

    return call_token(context, request.fencing_token, refuse)


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Serves the ranking service's RPCs on top of the local copy and the job."""

    def __init__(self, local: LocalRanking, job: RankingJob) -> None:
        self._local = local
        self._job = job

    async def TopArticles(
        self, request: ranking_pb2.TopArticlesRequest, context: Context
    ) -> ranking_pb2.TopArticlesResponse:
        """A page of the ranking, best first, from memory."""
        page = make_page(request.offset, request.limit)
        served = self._local.read()
        return ranking_pb2.TopArticlesResponse(
            articles=[article_to_proto(a) for a in page.of(served.ranking)],
            computed_at_ms=served.ranking.computed_at_ms,
            stale=served.stale,
            total=len(served.ranking.articles),
        )

    async def RunRanking(
        self, request: ranking_pb2.RunRankingRequest, context: Context
    ) -> ranking_pb2.RunRankingResponse:
        """Compute and store the ranking now, under the caller's fencing token."""
        result = await self._job.run(run_token(request, context))
        return ranking_pb2.RunRankingResponse(
            scored=result.scored,
            ranked=len(result.ranking.articles),
            computed_at_ms=result.ranking.computed_at_ms,
        )
