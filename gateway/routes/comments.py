"""``/comments``: post, list, expand replies, delete, count.

The routes reach the comment service through :attr:`gateway.deps.Runtime.stubs`; the
answers are built by :mod:`gateway.presenters`. Reads (``/comments/list``,
``/comments/replies``, ``/comments/count``) use no identity and may be made public; writes
take the author from the login.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from gateway import presenters
from gateway.deps import LOGGED_IN, NOT_LOGGED_IN, PrincipalDep, RuntimeDep
from gateway.envelope import Ack, Result
from gateway.schemas import INT64_MAX, INT64_MIN, DecimalInt
from gateway.schemas.comments import (
    CommentCount,
    CommentView,
    CreateCommentRequest,
    CreatedComment,
    DeleteCommentRequest,
)
from webook.comment.v1 import comment_pb2

router = APIRouter(prefix="/comments", tags=["comments"])


@router.post(
    "/create", summary="Post a comment or a reply", dependencies=LOGGED_IN, responses=NOT_LOGGED_IN
)
async def create_comment(
    body: CreateCommentRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[CreatedComment]:
    """Comment on ``(biz, bizId)``; with ``parentId``, reply to that comment (same object)."""
    reply = await runtime.stubs.comment.CreateComment(
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
    bizId: Annotated[DecimalInt, Query(gt=0, le=INT64_MAX)],
    biz: Annotated[str, Query(min_length=1, max_length=32)] = "article",
    minId: Annotated[
        DecimalInt, Query(ge=0, le=INT64_MAX, description="Cursor: ids below it; 0 = newest.")
    ] = 0,
    limit: Annotated[DecimalInt, Query(ge=1, le=100)] = 20,
    replies: Annotated[
        DecimalInt, Query(ge=1, le=10, description="Replies shown per comment.")
    ] = 3,
) -> Result[list[CommentView]]:
    """A page of top-level comments, each with its first replies; next page: ``minId`` =
    the last id."""
    reply = await runtime.stubs.comment.GetCommentList(
        comment_pb2.GetCommentListRequest(
            biz=biz, biz_id=bizId, min_id=minId, limit=limit, replies_per_comment=replies
        ),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    return Result(data=[presenters.comment_view(c, zone) for c in reply.comments])


@router.get("/replies", summary="More replies of one thread, oldest first")
async def more_replies(
    runtime: RuntimeDep,
    rootId: Annotated[
        DecimalInt, Query(gt=0, le=INT64_MAX, description="The thread's top-level comment.")
    ],
    maxId: Annotated[
        DecimalInt, Query(ge=0, le=INT64_MAX, description="Cursor: ids above it.")
    ] = 0,
    limit: Annotated[DecimalInt, Query(ge=1, le=100)] = 20,
) -> Result[list[CommentView]]:
    """Replies after ``maxId``; next page: ``maxId`` = the last id."""
    reply = await runtime.stubs.comment.GetMoreReplies(
        comment_pb2.GetMoreRepliesRequest(root_id=rootId, max_id=maxId, limit=limit),
        timeout=runtime.grpc_timeout,
    )
    zone = runtime.settings.zone
    return Result(data=[presenters.comment_view(c, zone) for c in reply.replies])


@router.post(
    "/delete",
    summary="Delete one's comment and its replies",
    dependencies=LOGGED_IN,
    responses=NOT_LOGGED_IN,
)
async def delete_comment(
    body: DeleteCommentRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Ack:
    """Only the author may delete; every reply below the comment goes with it."""
    await runtime.stubs.comment.DeleteComment(
        comment_pb2.DeleteCommentRequest(id=body.id, uid=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.get("/count", summary="Comment counts of objects")
async def count_comments(
    runtime: RuntimeDep,
    bizIds: Annotated[
        list[Annotated[DecimalInt, Field(ge=INT64_MIN, le=INT64_MAX)]],
        Query(min_length=1, max_length=100),
    ],
    biz: Annotated[str, Query(min_length=1, max_length=32)] = "article",
) -> Result[list[CommentCount]]:
    """``?bizIds=1&bizIds=2``: one count per id, in the order asked."""
    reply = await runtime.stubs.comment.CountComments(
        comment_pb2.CountCommentsRequest(biz=biz, biz_ids=bizIds), timeout=runtime.grpc_timeout
    )
    return Result(data=presenters.comment_counts(bizIds, reply.counts))
