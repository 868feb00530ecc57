"""``/search``: full-text search over published articles and users (public).

``GET /search/query`` needs no login (readers search before they sign in; the results are
public data: published articles, nicknames and about-me texts) and, like every public route,
ignores the ``Authorization`` header. It reaches the search service through
:func:`search_stub`, which reads ``app.state.runtime.clients.search``.

A query the service refuses (empty, too long, unbalanced quotes or parentheses, a page past
the first 1000 results) answers code 4 with the service's message; an unavailable index
answers code 5 "system error".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

from fastapi import APIRouter, Depends, Query, Request

from gateway.deps import RuntimeDep
from gateway.envelope import Result
from gateway.routes.comments import format_time
from gateway.schemas.search import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_RAW_QUERY_CHARS,
    HitType,
    SearchHitView,
    SearchPageView,
    SearchType,
)
from webook.search.v1 import search_pb2

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from webook.search.v1.search_pb2_grpc import SearchServiceAsyncStub

router = APIRouter(prefix="/search", tags=["search"])

_DOC_TYPES: Final[dict[str, search_pb2.DocType.ValueType]] = {
    "all": search_pb2.DOC_TYPE_UNSPECIFIED,
    "article": search_pb2.DOC_TYPE_ARTICLE,
    "user": search_pb2.DOC_TYPE_USER,
}
_HIT_TYPES: Final[dict[int, HitType]] = {
    search_pb2.DOC_TYPE_ARTICLE: "article",
    search_pb2.DOC_TYPE_USER: "user",
}

QUERY_HELP: Final = (
    "Free text, Chinese or English, 1..200 characters. Words must all match; "
    '"quoted words" match as a phrase, -word excludes, a OR b matches either; '
    "English words match their other forms (bucket, buckets)."
)


async def search_stub(request: Request) -> SearchServiceAsyncStub:
    """The search service stub opened by the gateway's lifespan (async: no thread hop)."""
    stub: SearchServiceAsyncStub = request.app.state.runtime.clients.search
    return stub


SearchStubDep = Annotated["SearchServiceAsyncStub", Depends(search_stub)]


def hit_view(hit: search_pb2.Hit, zone: ZoneInfo) -> SearchHitView | None:
    """The HTTP form of one result (``None`` for a type this gateway does not know)."""
    kind = _HIT_TYPES.get(hit.type)
    if kind is None:
        return None
    return SearchHitView(
        type=kind,
        id=hit.id,
        title=hit.title,
        titleHighlight=hit.title_highlight,
        snippet=hit.snippet,
        score=round(hit.score, 4),
        authorId=hit.author_id,
        authorName=hit.author_name,
        utime=format_time(hit.utime_ms, zone),
    )


@router.get(
    "/query",
    summary="Search articles and people",
    description=(
        "Published articles (title, text, author) and users (nickname, about-me), best match "
        "first; among similar matches, recently updated ones rank higher. Public: no login "
        "needed. A query the search engine cannot read answers code 4 with the reason."
    ),
)
async def search(
    runtime: RuntimeDep,
    stub: SearchStubDep,
    q: Annotated[
        str, Query(max_length=MAX_RAW_QUERY_CHARS, description=QUERY_HELP, examples=["微服务"])
    ],
    type: Annotated[
        SearchType, Query(description="What to search: articles, users, or both.")
    ] = "all",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Result[SearchPageView]:
    """One page of results; the next page starts at ``offset + limit`` (up to 1000)."""
    reply = await stub.Search(
        search_pb2.SearchRequest(query=q, type=_DOC_TYPES[type], offset=offset, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    views = [hit_view(hit, zone) for hit in reply.hits]
    return Result(data=SearchPageView(hits=[v for v in views if v is not None], total=reply.total))
