"""Comments only on what exists: the real article service behind a real comment server
(TLS off), plus a unit test of the rule on fakes.

Rule under test: ``CreateComment`` needs a known ``biz`` (else INVALID_ARGUMENT
``COMMENT_INVALID_BIZ``) and a published article (else NOT_FOUND
``COMMENT_TARGET_NOT_FOUND``: missing, draft or withdrawn), replies included; with the
article service down it fails closed (UNAVAILABLE ``COMMENT_TARGET_UNAVAILABLE``); listing
and deleting the comments of a withdrawn article still work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

import grpc
import pytest

from clients.tests.articles import ArticleAuthor, FakeTargets
from devstack.infra import free_port
from kit.config import Mode
from kit.errors import AppError, ErrorKind
from kit.tests.rpc import refusal_of
from services.comment.__main__ import build_runner
from services.comment.errors import DOMAIN, Reason
from services.comment.service import CommentService
from services.comment.settings import CommentSettings
from webook.comment.v1 import comment_pb2
from webook.comment.v1.comment_pb2_grpc import CommentServiceStub

if TYPE_CHECKING:
    from services.comment.service import UnitOfWork
    from webook.comment.v1.comment_pb2_grpc import CommentServiceAsyncStub

pytestmark = pytest.mark.integration

ARTICLE = "article"
READER = 31


async def _comments(
    database_url: str, redis_url: str, article_address: str
) -> AsyncIterator[CommentServiceAsyncStub]:
    settings = CommentSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        peers={"article": article_address},
        # Every comment asks the article service: a withdrawal shows at once.
        published_cache_ttl_seconds=0,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield CommentServiceStub(channel)
    finally:
        await runner.stop()


@pytest.fixture
async def stub(
    database_url: str, redis_url: str, redis_client: object, article_address: str
) -> AsyncIterator[CommentServiceAsyncStub]:
    """A comment server asking the real article service."""
    async for running in _comments(database_url, redis_url, article_address):
        yield running


@pytest.fixture
async def orphan_stub(
    database_url: str, redis_url: str, redis_client: object
) -> AsyncIterator[CommentServiceAsyncStub]:
    """A comment server whose article service is down (nothing listens there)."""
    async for running in _comments(database_url, redis_url, f"127.0.0.1:{free_port()}"):
        yield running


refusal = partial(refusal_of, domain=DOMAIN)


async def post(
    stub: CommentServiceAsyncStub, biz_id: int, *, biz: str = ARTICLE, parent_id: int = 0
) -> int:
    """Comment on ``(biz, biz_id)`` (a reply to ``parent_id``); the new comment's id."""
    answer = await stub.CreateComment(
        comment_pb2.CreateCommentRequest(
            comment=comment_pb2.Comment(
                uid=READER, biz=biz, biz_id=biz_id, content="hello", parent_id=parent_id
            )
        )
    )
    return int(answer.id)


async def count(stub: CommentServiceAsyncStub, biz_id: int) -> int:
    answer = await stub.CountComments(
        comment_pb2.CountCommentsRequest(biz=ARTICLE, biz_ids=[biz_id])
    )
    return answer.counts[biz_id]


async def test_a_published_article_takes_comments_and_replies(
    stub: CommentServiceAsyncStub, author: ArticleAuthor
) -> None:
    article_id = await author.publish()
    top = await post(stub, article_id)
    await post(stub, article_id, parent_id=top)
    assert await count(stub, article_id) == 2


@pytest.mark.parametrize("kind", ["missing", "draft", "withdrawn"])
async def test_what_readers_cannot_open_takes_no_comment(
    stub: CommentServiceAsyncStub, author: ArticleAuthor, kind: str
) -> None:
    if kind == "missing":
        article_id = 999_999
    elif kind == "draft":
        article_id = await author.draft()
    else:
        article_id = await author.publish()
        await author.withdraw(article_id)
    assert await refusal(post(stub, article_id)) == (
        grpc.StatusCode.NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    )
    assert await count(stub, article_id) == 0


async def test_replies_inherit_the_check_and_old_comments_stay_listable_and_deletable(
    stub: CommentServiceAsyncStub, author: ArticleAuthor
) -> None:
    article_id = await author.publish()
    top = await post(stub, article_id)
    await author.withdraw(article_id)
    assert await refusal(post(stub, article_id, parent_id=top)) == (
        grpc.StatusCode.NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    )
    page = await stub.GetCommentList(
        comment_pb2.GetCommentListRequest(biz=ARTICLE, biz_id=article_id)
    )
    assert [c.id for c in page.comments] == [top]
    await stub.DeleteComment(comment_pb2.DeleteCommentRequest(id=top, uid=READER))
    assert await count(stub, article_id) == 0


async def test_an_unknown_biz_is_invalid(stub: CommentServiceAsyncStub) -> None:
    assert await refusal(post(stub, 1, biz="nonexistent_biz")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_BIZ,
    )


async def test_with_the_article_service_down_comments_fail_closed(
    orphan_stub: CommentServiceAsyncStub,
) -> None:
    assert await refusal(post(orphan_stub, 1)) == (
        grpc.StatusCode.UNAVAILABLE,
        Reason.TARGET_UNAVAILABLE,
    )
    assert await count(orphan_stub, 1) == 0


async def test_the_owner_is_asked_after_the_input_checks_and_before_any_transaction() -> None:
    def no_units() -> UnitOfWork:
        raise AssertionError("a refused comment must not open a unit of work")

    targets = FakeTargets(published=set())
    service = CommentService(no_units, targets=targets)
    for biz, content in (("nonexistent_biz", "hi"), (ARTICLE, "   ")):
        with pytest.raises(AppError) as caught:
            await service.create(
                uid=READER, biz=biz, biz_id=1, content=content, root_id=0, parent_id=0
            )
        assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert targets.asked == []
    with pytest.raises(AppError) as caught:
        await service.create(
            uid=READER, biz=ARTICLE, biz_id=1, content="hi", root_id=0, parent_id=0
        )
    assert (caught.value.kind, caught.value.reason) == (
        ErrorKind.NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    )
    assert targets.asked == [(ARTICLE, 1)]
