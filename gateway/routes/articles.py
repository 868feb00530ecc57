"""``/articles``: writing (edit, publish, withdraw, list, detail) and reading (pub, like,
collect), all for logged-in users, with the original backend's field names.

Reading a published article fetches the article and its interaction counts concurrently.
The read itself is counted by the article service (it emits an ``ArticleRead`` event);
when the interactive service cannot answer, the article is still served, with zero counts,
because a reader wants the text more than the numbers. The answers are built by
:mod:`gateway.presenters`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final, TypedDict

import grpc
from fastapi import APIRouter, Path, Request
from prometheus_client import Counter

from gateway import presenters
from gateway.auth.principal import Principal
from gateway.deps import (
    LOGGED_IN,
    NOT_LOGGED_IN,
    PrincipalDep,
    RuntimeDep,
    access_token_scheme,
    principal_of,
    runtime_of,
)
from gateway.envelope import Ack, Result
from gateway.routes.direct import DirectIdRoute
from gateway.schemas import INT64_MAX, DecimalInt
from gateway.schemas.articles import (
    ArticleDetail,
    ArticleListItem,
    CollectRequest,
    EditArticleRequest,
    LikeRequest,
    ListRequest,
    PublishedArticle,
    WithdrawRequest,
)
from webook.article.v1 import article_pb2
from webook.interactive.v1 import interactive_pb2

logger = logging.getLogger(__name__)

BIZ: Final = "article"
ArticleIdPath = Annotated[DecimalInt, Path(ge=1, le=INT64_MAX, description="Article id.")]

DEGRADED_READS = Counter(
    "webook_gateway_degraded_total",
    "Answers served without an optional part because a dependency failed.",
    ["route", "part"],
)

# Parametrised once: ``Result[PublishedArticle]`` looks the class up in pydantic's cache on
# every evaluation.
_PublishedResult: Final = Result[PublishedArticle]

router = APIRouter(
    prefix="/articles", tags=["articles"], dependencies=LOGGED_IN, responses=NOT_LOGGED_IN
)


async def read_published(request: Request, id: ArticleIdPath) -> Result[PublishedArticle]:
    """The published article with its counts and the reader's like/collect flags."""
    principal, runtime = principal_of(request), runtime_of(request)
    article_call = runtime.stubs.article.GetPublishedById(
        article_pb2.GetPublishedByIdRequest(id=id, uid=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    counts_call = runtime.stubs.interactive.Get(
        interactive_pb2.GetRequest(biz=BIZ, biz_id=id, uid=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    article_reply, counts_reply = await asyncio.gather(
        article_call, counts_call, return_exceptions=True
    )
    if isinstance(article_reply, BaseException):
        raise article_reply
    counts = interactive_pb2.Interactive()
    if isinstance(counts_reply, grpc.aio.AioRpcError):
        DEGRADED_READS.labels("/articles/pub/{id}", "interactive").inc()
        logger.warning(
            "serving an article without its counts",
            extra={"article_id": id, "grpc_code": counts_reply.code().name},
        )
    elif isinstance(counts_reply, BaseException):
        raise counts_reply
    else:
        counts = counts_reply.intr
    return _PublishedResult(
        data=presenters.published_article(article_reply.article, counts, runtime.settings.zone)
    )


def add_reader_route(app_router: APIRouter) -> None:
    """Register ``GET /articles/pub/{id}`` (:func:`read_published`) on the app's own router.

    The hottest route, so it is cheap to find and to run:

    - it sits on the app's router itself (``app.add_api_route``), right after FastAPI's
      documentation routes, not in an included router: FastAPI matches an included router
      through its own candidates list (twice per request: to select and to handle),
      which cost more than the route's own match;
    - its caller and runtime are read from the request directly: each FastAPI dependency
      (the ``/articles`` router's ``Security(access_token_scheme)`` included, which only
      documents the login the middleware enforces) is solved on every request. The
      security requirement is declared in the schema instead, so the OpenAPI document is
      the one the dependency gave;
    - :class:`~gateway.routes.direct.DirectIdRoute` answers well-formed reads without
      FastAPI's request handler; the route, its validation errors and its schema stay
      FastAPI's.

    Its tags and responses are those of the ``/articles`` router.
    """
    app_router.add_api_route(
        "/articles/pub/{id}",
        read_published,
        methods=["GET"],
        summary="Read a published article (counts a read)",
        tags=["articles"],
        responses=NOT_LOGGED_IN,
        openapi_extra={"security": [{access_token_scheme.scheme_name: []}]},
        route_class_override=DirectIdRoute,
    )


class _Written(TypedDict):
    """The fields of a save or a publish: the article as the caller wrote it."""

    id: int
    title: str
    content: str
    author_id: int


def _written(body: EditArticleRequest, author: Principal) -> _Written:
    return {"id": body.id, "title": body.title, "content": body.content, "author_id": author.uid}


@router.post("/edit", summary="Save a draft")
async def edit(
    body: EditArticleRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[int]:
    """Create (id 0 or absent) or update a draft of the caller's; answers its id."""
    reply = await runtime.stubs.article.Save(
        article_pb2.SaveRequest(**_written(body, principal)), timeout=runtime.grpc_timeout
    )
    return Result[int](data=reply.id)


@router.post("/publish", summary="Save and publish")
async def publish(
    body: EditArticleRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[int]:
    """Save the caller's article and publish it in one step; answers its id."""
    reply = await runtime.stubs.article.Publish(
        article_pb2.PublishRequest(**_written(body, principal)), timeout=runtime.grpc_timeout
    )
    return Result[int](data=reply.id)


@router.post("/withdraw", summary="Withdraw a published article")
async def withdraw(body: WithdrawRequest, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Make the caller's published article invisible to readers (status 3)."""
    await runtime.stubs.article.Withdraw(
        article_pb2.WithdrawRequest(id=body.id, author_id=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.post("/list", summary="The caller's own articles, newest first")
async def list_own(
    body: ListRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[list[ArticleListItem]]:
    """A page of the caller's articles (limit at most 100)."""
    reply = await runtime.stubs.article.List(
        article_pb2.ListRequest(author_id=principal.uid, offset=body.offset, limit=body.limit),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    return Result[list[ArticleListItem]](
        data=[presenters.article_list_item(a, zone) for a in reply.articles]
    )


@router.get("/detail/{id}", summary="The author's view of one of their articles")
async def detail(
    id: ArticleIdPath, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[ArticleDetail]:
    """The caller's own article, drafts included; someone else's is refused."""
    reply = await runtime.stubs.article.GetById(
        article_pb2.GetByIdRequest(id=id, author_id=principal.uid), timeout=runtime.grpc_timeout
    )
    return Result[ArticleDetail](
        data=presenters.article_detail(reply.article, runtime.settings.zone)
    )


@router.post("/pub/like", summary="Like or cancel a like")
async def like(body: LikeRequest, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Idempotent: liking twice counts once; cancelling a missing like changes nothing."""
    if body.like:
        await runtime.stubs.interactive.Like(
            interactive_pb2.LikeRequest(biz=BIZ, biz_id=body.id, uid=principal.uid),
            timeout=runtime.grpc_timeout,
        )
    else:
        await runtime.stubs.interactive.CancelLike(
            interactive_pb2.CancelLikeRequest(biz=BIZ, biz_id=body.id, uid=principal.uid),
            timeout=runtime.grpc_timeout,
        )
    return Ack()


@router.post("/pub/collect", summary="Collect into a collection")
async def collect(body: CollectRequest, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Collect the article into collection ``cid`` (0 = default); idempotent."""
    await runtime.stubs.interactive.Collect(
        interactive_pb2.CollectRequest(biz=BIZ, biz_id=body.id, uid=principal.uid, cid=body.cid),
        timeout=runtime.grpc_timeout,
    )
    return Ack()
