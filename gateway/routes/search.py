"""``/search``: full-text search over published articles and users (public).

``GET /search/query`` needs no login (readers search before they sign in; the results are
public data: published articles, nicknames and about-me texts) and, like every public route,
ignores the ``Authorization`` header. It reaches the search service through
:attr:`gateway.deps.Runtime.stubs`; :func:`gateway.presenters.search_hit` shows the hits.

A query holding a control character is refused here (code 4, before the service); a query
the service refuses (empty, too long, too many terms, a page past the first 1000 results)
answers code 4 with the service's message; an unavailable index answers code 5 "system
error". The text is never query syntax: field names, wildcards, ranges, boosts and
operators are searched as the words they contain. The edge limits the route per client IP
(rule ``search_ip``, :mod:`gateway.middleware.edge_settings`).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from gateway import presenters
from gateway.deps import RuntimeDep
from gateway.envelope import Result
from gateway.schemas import DecimalInt
from gateway.schemas.search import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_RAW_QUERY_CHARS,
    SearchPageView,
    SearchType,
    check_query_text,
)
from webook.search.v1 import search_pb2

router = APIRouter(prefix="/search", tags=["search"])

_DOC_TYPES: Final[dict[str, search_pb2.DocType.ValueType]] = {
    "all": search_pb2.DOC_TYPE_UNSPECIFIED,
    "article": search_pb2.DOC_TYPE_ARTICLE,
    "user": search_pb2.DOC_TYPE_USER,
}

QUERY_HELP: Final = (
    "Free text, Chinese or English, 1..200 characters, at most 64 terms, no control "
    'characters. Words must all match; "quoted words" match as a phrase; anything else '
    "(title:, *, OR, -, brackets) is searched as plain text. English words match their "
    "other forms (bucket, buckets)."
)


@router.get(
    "/query",
    summary="Search articles and people",
    description=(
        "Published articles (title, text, author) and users (nickname, about-me), best match "
        "first; among similar matches, recently updated ones rank higher. Public: no login "
        "needed, limited per client IP. A query the service refuses answers code 4 with "
        "the reason."
    ),
)
async def search(
    runtime: RuntimeDep,
    q: Annotated[
        str,
        Query(max_length=MAX_RAW_QUERY_CHARS, description=QUERY_HELP, examples=["微服务"]),
        AfterValidator(check_query_text),
    ],
    type: Annotated[
        SearchType, Query(description="What to search: articles, users, or both.")
    ] = "all",
    offset: Annotated[DecimalInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[DecimalInt, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Result[SearchPageView]:
    """One page of results; the next page starts at ``offset + limit`` (up to 1000)."""
    reply = await runtime.stubs.search.Search(
        search_pb2.SearchRequest(query=q, type=_DOC_TYPES[type], offset=offset, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.search_page(reply, runtime.settings.zone))
