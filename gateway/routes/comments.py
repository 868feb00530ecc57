"""``/comments``: post, list, expand replies, delete, count.

The routes reach the comment service through :func:`comment_stub`, which reads
``app.state.runtime.clients.comment`` (tests override the dependency). Reads
(``/comments/list``, ``/comments/replies``, ``/comments/count``) use no identity and may be
made public; writes take the author from the login.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Security
from pydantic import Field

from gateway.deps import PrincipalDep, RuntimeDep, access_token_scheme
from gateway.envelope import Ack, Result
from gateway.schemas import INT64_MAX, INT64_MIN
from gateway.schemas.comments import (
    CommentCount,
    CommentView,
    CreateCommentRequest,
    CreatedComment,
    DeleteCommentRequest,
)
from webook.comment.v1 import comment_pb2

if TYPE_CHECKING:
    from webook.comment.v1.comment_pb2_grpc import CommentServiceAsyncStub

_UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "Not logged in, token invalid or expired. Empty body."}
}

router = APIRouter(prefix="/comments", tags=["comments"])
logged_in = [Security(access_token_scheme)]


async def comment_stub(request: Request) -> CommentServiceAsyncStub:
    """The comment service stub opened by the gateway's lifespan (async: no thread hop)."""
    stub: CommentServiceAsyncStub = request.app.state.runtime.clients.comment
    return stub


CommentStubDep = Annotated["CommentServiceAsyncStub", Depends(comment_stub)]


def format_time(ms: int, zone: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a millisecond timestamp in ``zone``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def comment_view(comment: comment_pb2.Comment, zone: ZoneInfo) -> CommentView:
    """The HTTP form of a comment and its listed replies."""
    return CommentView(
        id=comment.id,
        uid=comment.uid,
        biz=comment.biz,
        bizId=comment.biz_id,
        content=comment.content,
        rootId=comment.root_id,
        parentId=comment.parent_id,
        replyCnt=comment.reply_cnt,
        ctime=format_time(comment.ctime_ms, zone),
        replies=[comment_view(reply, zone) for reply in comment.children],
    )


@router.post(
    "/create", summary="Post a comment or a reply", dependencies=logged_in, responses=_UNAUTHORIZED
)
async def create_comment(
    body: CreateCommentRequest, principal: PrincipalDep, runtime: RuntimeDep, stub: CommentStubDep
) -> Result[CreatedComment]:
    """Comment on ``(biz, bizId)``; with ``parentId``, reply to that comment (same object)."""
    reply = await stub.CreateComment(
        comment_pb2.CreateCommentRequest(
            comment=comment_pb2.Comment(
                uid=principal.uid,
                biz=body.biz,
                biz_id=body.bizId,
                content=body.content,
                parent_id=body.parentId,
            )
        ),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=CreatedComment(id=reply.id))


@router.get("/list", summary="Top-level comments of an object, newest first")
async def list_comments(
    runtime: RuntimeDep,
    stub: CommentStubDep,
    bizId: Annotated[int, Query(gt=0, le=INT64_MAX)],
    biz: Annotated[str, Query(min_length=1, max_length=32)] = "article",
    minId: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="Cursor: ids below it; 0 = newest.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    replies: Annotated[int, Query(ge=1, le=10, description="Replies shown per comment.")] = 3,
) -> Result[list[CommentView]]:
    """A page of top-level comments, each with its first replies; next page: ``minId`` =
    the last id."""
    reply = await stub.GetCommentList(
        comment_pb2.GetCommentListRequest(
            biz=biz, biz_id=bizId, min_id=minId, limit=limit, replies_per_comment=replies
        ),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    return Result(data=[comment_view(c, zone) for c in reply.comments])


@router.get("/replies", summary="More replies of one thread, oldest first")
async def more_replies(
    runtime: RuntimeDep,
    stub: CommentStubDep,
    rootId: Annotated[
        int, Query(gt=0, le=INT64_MAX, description="The thread's top-level comment.")
    ],
    maxId: Annotated[int, Query(ge=0, le=INT64_MAX, description="Cursor: ids above it.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Result[list[CommentView]]:
    """Replies after ``maxId``; next page: ``maxId`` = the last id."""
    reply = await stub.GetMoreReplies(
        comment_pb2.GetMoreRepliesRequest(root_id=rootId, max_id=maxId, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    return Result(data=[comment_view(c, zone) for c in reply.replies])


@router.post(
    "/delete",
    summary="Delete one's comment and its replies",
    dependencies=logged_in,
    responses=_UNAUTHORIZED,
)
async def delete_comment(
    body: DeleteCommentRequest, principal: PrincipalDep, runtime: RuntimeDep, stub: CommentStubDep
) -> Ack:
    """Only the author may delete; every reply below the comment goes with it."""
    await stub.DeleteComment(
        comment_pb2.DeleteCommentRequest(id=body.id, uid=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.get("/count", summary="Comment counts of objects")
async def count_comments(
    runtime: RuntimeDep,
    stub: CommentStubDep,
    bizIds: Annotated[
        list[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]],
        Query(min_length=1, max_length=100),
    ],
    biz: Annotated[str, Query(min_length=1, max_length=32)] = "article",
) -> Result[list[CommentCount]]:
    """``?bizIds=1&bizIds=2``: one count per id, in the order asked."""
    reply = await stub.CountComments(
        comment_pb2.CountCommentsRequest(biz=biz, biz_ids=bizIds), timeout=runtime.grpc_timeout
    )
    ordered = dict.fromkeys(i for i in bizIds if i > 0)
    return Result(data=[CommentCount(bizId=i, count=reply.counts.get(i, 0)) for i in ordered])
