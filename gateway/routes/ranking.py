"""``GET /articles/ranking``: the hot articles, public (no login).

The ranking service answers from its replica's memory (docs/ranking.md); this route only
checks the page bounds at the edge and shapes the answer. It is a router of its own because
the other ``/articles`` routes require a login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query

from gateway.deps import RuntimeDep
from gateway.envelope import Result
from gateway.presenters import format_time
from gateway.schemas import DecimalInt
from gateway.schemas.ranking import MAX_LIMIT, MAX_OFFSET, RankedArticleView, RankingPageView
from webook.ranking.v1 import ranking_pb2

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

router = APIRouter(prefix="/articles", tags=["articles"])

RANKING_PATH = "/articles/ranking"


def ranking_page(reply: ranking_pb2.TopArticlesResponse, zone: ZoneInfo) -> RankingPageView:
    """The API view of a page of the ranking."""
    return RankingPageView(
        articles=[
            RankedArticleView(
                id=a.id,
                title=a.title,
                abstract=a.abstract,
                authorId=a.author_id,
                authorName=a.author_name,
                likeCnt=a.like_cnt,
                utime=format_time(a.utime_ms, zone),
                score=a.score,
            )
            for a in reply.articles
        ],
        total=reply.total,
        computedAt=format_time(reply.computed_at_ms, zone) if reply.computed_at_ms else "",
        stale=reply.stale,
    )


@router.get(
    "/ranking",
    summary="Hot articles",
    description=(
        "The most liked recent articles, best first: likes decayed by the time since the "
        "article was last published, recomputed periodically. Public: no login needed."
    ),
)
async def ranking(
    runtime: RuntimeDep,
    offset: Annotated[DecimalInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[DecimalInt, Query(ge=1, le=MAX_LIMIT)] = 20,
) -> Result[RankingPageView]:
    """One page of the ranking; the next starts at ``offset + limit``."""
    reply = await runtime.stubs.ranking.TopArticles(
        ranking_pb2.TopArticlesRequest(offset=offset, limit=limit), timeout=runtime.grpc_timeout
    )
    return Result(data=ranking_page(reply, runtime.settings.zone))
