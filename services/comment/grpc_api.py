"""gRPC servicer of ``webook.comment.v1.CommentService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.comment.service.CommentService` call;
refusals are :class:`kit.errors.AppError` subclasses that the server's error interceptor
turns into status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.comment.domain import Comment
from services.comment.service import CommentService
from webook.comment.v1 import comment_pb2, comment_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def comment_to_proto(comment: Comment) -> comment_pb2.Comment:
    """The wire form of ``comment`` (``children`` = its listed first replies)."""
    return comment_pb2.Comment(
        id=comment.id,
        uid=comment.uid,
        biz=comment.biz,
        biz_id=comment.biz_id,
        content=comment.content,
        root_id=comment.root_id,
        parent_id=comment.parent_id,
        children=[comment_to_proto(reply) for reply in comment.replies],
        reply_cnt=comment.reply_cnt,
        ctime_ms=comment.ctime_ms,
    )


class CommentServicer(comment_pb2_grpc.CommentServiceServicer):
    """Serves the comment service's RPCs on top of :class:`CommentService`."""

    def __init__(self, service: CommentService) -> None:
        self._service = service

    async def CreateComment(
        self, request: comment_pb2.CreateCommentRequest, context: Context
    ) -> comment_pb2.CreateCommentResponse:
        """Post a comment or a reply (``comment.uid`` is the author)."""
        c = request.comment
        created = await self._service.create(
            uid=c.uid,
            biz=c.biz,
            biz_id=c.biz_id,
            content=c.content,
            root_id=c.root_id,
            parent_id=c.parent_id,
        )
        return comment_pb2.CreateCommentResponse(id=created.id)

    async def GetCommentList(
        self, request: comment_pb2.GetCommentListRequest, context: Context
    ) -> comment_pb2.GetCommentListResponse:
        """A page of top-level comments, newest first, with their first replies."""
        page = await self._service.list_comments(
            biz=request.biz,
            biz_id=request.biz_id,
            min_id=request.min_id,
            limit=request.limit,
            replies=request.replies_per_comment,
        )
        return comment_pb2.GetCommentListResponse(comments=[comment_to_proto(c) for c in page])

    async def GetMoreReplies(
        self, request: comment_pb2.GetMoreRepliesRequest, context: Context
    ) -> comment_pb2.GetMoreRepliesResponse:
        """Replies of one thread after a cursor, oldest first."""
        replies = await self._service.more_replies(
            root_id=request.root_id, max_id=request.max_id, limit=request.limit
        )
        return comment_pb2.GetMoreRepliesResponse(replies=[comment_to_proto(c) for c in replies])

    async def DeleteComment(
        self, request: comment_pb2.DeleteCommentRequest, context: Context
    ) -> comment_pb2.DeleteCommentResponse:
        """Delete the caller's comment and its sub-tree."""
        await self._service.delete(comment_id=request.id, uid=request.uid)
        return comment_pb2.DeleteCommentResponse()

    async def CountComments(
        self, request: comment_pb2.CountCommentsRequest, context: Context
    ) -> comment_pb2.CountCommentsResponse:
        """Comment counts of up to 100 objects of one biz."""
        counts = await self._service.counts(biz=request.biz, biz_ids=request.biz_ids)
        return comment_pb2.CountCommentsResponse(counts=counts)
