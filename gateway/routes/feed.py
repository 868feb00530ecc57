"""``GET /feed``: the logged-in reader's feed, newest first, a page at a time.

The feed service (docs/feed.md) answers the entries of the caller's feed: articles published
by the authors the caller follows, likes on the caller's articles, new followers. The answer
is built by :mod:`gateway.presenters`. A cursor the service did not hand out, or a page size
it refuses, is code 4; the service or the follow service behind it unavailable is code 5
(:mod:`gateway.errors`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway import presenters
from gateway.deps import LOGGED_IN, NOT_LOGGED_IN, PrincipalDep, RuntimeDep
from gateway.envelope import Result
from gateway.schemas import DecimalInt
from gateway.schemas.feed import MAX_CURSOR_CHARS, FeedPageView
from webook.feed.v1 import feed_pb2

router = APIRouter(tags=["feed"], dependencies=LOGGED_IN, responses=NOT_LOGGED_IN)


@router.get(
    "/feed",
    summary="The caller's feed",
    description=(
        "Entries newest first: `article_published` (by an author the caller follows), "
        "`article_liked` (one of the caller's articles), `user_followed` (the caller). For "
        "the next page pass `nextCursor` as `cursor`; an empty `nextCursor` means the last "
        "page. A cursor not handed out by this route answers code 4."
    ),
)
async def get_feed(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    cursor: Annotated[
        str,
        Query(
            max_length=MAX_CURSOR_CHARS,
            description="The previous page's nextCursor; empty or absent = the newest page.",
        ),
    ] = "",
    limit: Annotated[DecimalInt, Query(ge=1, le=100, description="Entries per page.")] = 20,
) -> Result[FeedPageView]:
    """A page of the caller's feed and the cursor of the next one."""
    reply = await runtime.stubs.feed.GetFeed(
        feed_pb2.GetFeedRequest(uid=principal.uid, cursor=cursor, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.feed_page(reply))
