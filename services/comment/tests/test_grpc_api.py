"""gRPC-level tests of the comment service on SQLite and MariaDB with real Redis.

They check every RPC and every refusal a client such as the gateway relies on: status
codes and the ``google.rpc.ErrorInfo`` reason of each.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis

from kit.tests.rpc import refusal_of
from services.comment.errors import DOMAIN, Reason
from services.comment.repository.cache import first_page_key
from webook.comment.v1 import comment_pb2

if TYPE_CHECKING:
    from webook.comment.v1.comment_pb2_grpc import CommentServiceAsyncStub

pytestmark = pytest.mark.integration

ANN, BOB = 1, 2


refusal = partial(refusal_of, domain=DOMAIN)


async def post(
    stub: CommentServiceAsyncStub,
    content: str,
    *,
    uid: int = ANN,
    biz_id: int = 7,
    parent_id: int = 0,
    root_id: int = 0,
) -> int:
    """Create a comment on article ``biz_id``; its id."""
    reply = await stub.CreateComment(
        comment_pb2.CreateCommentRequest(
            comment=comment_pb2.Comment(
                uid=uid,
                biz="article",
                biz_id=biz_id,
                content=content,
                parent_id=parent_id,
                root_id=root_id,
            )
        )
    )
    return reply.id


async def count(stub: CommentServiceAsyncStub, biz_id: int = 7) -> int:
    """The stored comment count of article ``biz_id``."""
    reply = await stub.CountComments(
        comment_pb2.CountCommentsRequest(biz="article", biz_ids=[biz_id])
    )
    return reply.counts[biz_id]


async def test_threads_pages_and_counts(stub: CommentServiceAsyncStub) -> None:
    first = await post(stub, "first")
    second = await post(stub, "  <b>second</b> & more  ")
    replies = [await post(stub, f"reply {i}", uid=BOB, parent_id=first) for i in range(5)]
    nested = await post(stub, "nested", parent_id=replies[0])

    page = (
        await stub.GetCommentList(
            comment_pb2.GetCommentListRequest(
                biz="article", biz_id=7, limit=10, replies_per_comment=2
            )
        )
    ).comments
    assert [c.id for c in page] == [second, first]
    assert page[0].content == "second &amp; more"
    assert page[0].reply_cnt == 0
    assert not page[0].children
    assert page[1].reply_cnt == 6
    assert [c.id for c in page[1].children] == replies[:2]
    assert all(c.root_id == first for c in page[1].children)

    older = await stub.GetCommentList(
        comment_pb2.GetCommentListRequest(biz="article", biz_id=7, min_id=second, limit=10)
    )
    assert [c.id for c in older.comments] == [first]

    more = await stub.GetMoreReplies(
        comment_pb2.GetMoreRepliesRequest(root_id=first, max_id=replies[1], limit=3)
    )
    assert [c.id for c in more.replies] == replies[2:5]
    rest = await stub.GetMoreReplies(
        comment_pb2.GetMoreRepliesRequest(root_id=first, max_id=replies[4], limit=3)
    )
    assert [(c.id, c.parent_id) for c in rest.replies] == [(nested, replies[0])]

    assert await count(stub) == 8
    counts = await stub.CountComments(
        comment_pb2.CountCommentsRequest(biz="article", biz_ids=[7, 8])
    )
    assert dict(counts.counts) == {7: 8, 8: 0}


async def test_delete_removes_the_subtree_and_uncounts_it(stub: CommentServiceAsyncStub) -> None:
    root = await post(stub, "root")
    child = await post(stub, "child", uid=BOB, parent_id=root)
    grandchild = await post(stub, "grandchild", parent_id=child)
    sibling = await post(stub, "sibling", parent_id=root)
    assert await count(stub) == 4

    await stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=child, uid=BOB))
    assert await count(stub) == 2
    replies = await stub.GetMoreReplies(comment_pb2.GetMoreRepliesRequest(root_id=root))
    assert [c.id for c in replies.replies] == [sibling]
    page = await stub.GetCommentList(comment_pb2.GetCommentListRequest(biz="article", biz_id=7))
    assert page.comments[0].reply_cnt == 1
    code, reason = await refusal(
        stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=grandchild, uid=ANN))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)

    await stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=root, uid=ANN))
    assert await count(stub) == 0
    page = await stub.GetCommentList(comment_pb2.GetCommentListRequest(biz="article", biz_id=7))
    assert not page.comments


async def test_first_page_is_cached_and_invalidated_on_writes(
    stub: CommentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    request = comment_pb2.GetCommentListRequest(biz="article", biz_id=7)
    first = await post(stub, "one")
    assert [c.id for c in (await stub.GetCommentList(request)).comments] == [first]
    assert await redis_client.exists(first_page_key("article", 7))

    second = await post(stub, "two")
    assert not await redis_client.exists(first_page_key("article", 7))
    assert [c.id for c in (await stub.GetCommentList(request)).comments] == [second, first]

    reply = await post(stub, "reply", parent_id=first)
    page = (await stub.GetCommentList(request)).comments
    assert [c.id for c in page[1].children] == [reply]
    await stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=second, uid=ANN))
    assert [c.id for c in (await stub.GetCommentList(request)).comments] == [first]


async def test_refusals(stub: CommentServiceAsyncStub) -> None:
    root = await post(stub, "root")
    other_article = await post(stub, "elsewhere", biz_id=8)
    other_root = await post(stub, "another thread")

    code, reason = await refusal(
        stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=root, uid=BOB))
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, Reason.NOT_AUTHOR)
    code, reason = await refusal(post(stub, "hi", parent_id=other_article))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.PARENT_MISMATCH)
    code, reason = await refusal(post(stub, "hi", parent_id=root, root_id=other_root))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.PARENT_MISMATCH)
    code, reason = await refusal(post(stub, "hi", root_id=root))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.PARENT_MISMATCH)
    code, reason = await refusal(post(stub, "hi", parent_id=10**9))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, Reason.PARENT_NOT_FOUND)
    code, reason = await refusal(
        stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=10**9, uid=ANN))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)
    code, reason = await refusal(
        stub.GetMoreReplies(comment_pb2.GetMoreRepliesRequest(root_id=10**9))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)

    for content in ["", "   ", "<script>alert(1)</script>", "x" * 2001, "bell\x07"]:
        code, reason = await refusal(post(stub, content))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_CONTENT)
    assert await post(stub, "é" * 2000) > 0
    code, reason = await refusal(post(stub, "hi", uid=0))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_USER)
    code, reason = await refusal(
        stub.GetCommentList(comment_pb2.GetCommentListRequest(biz="Article!", biz_id=7))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_BIZ)
    code, reason = await refusal(
        stub.GetCommentList(comment_pb2.GetCommentListRequest(biz="article", biz_id=7, limit=101))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE)
    code, reason = await refusal(
        stub.CountComments(
            comment_pb2.CountCommentsRequest(biz="article", biz_ids=list(range(1, 102)))
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.TOO_MANY_IDS)
