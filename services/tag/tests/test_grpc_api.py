"""gRPC-level tests of the tag service: the real process wiring (``build_runner``) on SQLite
and MariaDB, served on a free port, with a stand-in article service answering
``GetPublishedAuthor`` on a real port and the session's broker for the outbox relay.

They check every RPC and the status code and ``google.rpc.ErrorInfo`` reason of the
refusals a client such as the gateway relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from kit.config import Mode
from kit.tests.rpc import refusal_of
from services.tag.__main__ import build_runner
from services.tag.errors import DOMAIN, Reason
from services.tag.settings import TagSettings
from webook.article.v1 import article_pb2
from webook.tag.v1 import tag_pb2
from webook.tag.v1.tag_pb2_grpc import TagServiceStub

if TYPE_CHECKING:
    from webook.tag.v1.tag_pb2_grpc import TagServiceAsyncStub

pytestmark = pytest.mark.integration

AUTHOR, OTHER = 7, 8
AUTHORS = {70: AUTHOR, 80: OTHER}


@asynccontextmanager
async def stand_in_authors(authors: dict[int, int]) -> AsyncIterator[str]:
    """The address of a server whose ``GetPublishedAuthor`` answers from ``authors``
    (NOT_FOUND for the rest; any other method answers UNIMPLEMENTED)."""

    async def published_author(
        request: article_pb2.GetPublishedAuthorRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> article_pb2.GetPublishedAuthorResponse:
        author = authors.get(request.id)
        if author is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such published article")
        return article_pb2.GetPublishedAuthorResponse(author_id=author)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "webook.article.v1.ArticleService",
                {
                    "GetPublishedAuthor": grpc.unary_unary_rpc_method_handler(
                        published_author,
                        request_deserializer=article_pb2.GetPublishedAuthorRequest.FromString,
                        response_serializer=(
                            article_pb2.GetPublishedAuthorResponse.SerializeToString
                        ),
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def stub(database_url: str, kafka_bootstrap: str) -> AsyncIterator[TagServiceAsyncStub]:
    """A client of the tag service served by ``build_runner`` on a free port (the cache's
    event consumer off: this process is the only replica)."""
    async with stand_in_authors(AUTHORS) as articles:
        settings = TagSettings(
            mode=Mode.TEST,
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            grpc_port=0,
            metrics_port=-1,
            shutdown_grace=1.0,
            cache_consumer_enabled=False,
            peers={"article": articles},
        )
        runner = build_runner(settings)
        port = await runner.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield TagServiceStub(channel)
        finally:
            await runner.stop()


refusal = partial(refusal_of, domain=DOMAIN)


async def test_tags_on_an_article_over_the_wire(stub: TagServiceAsyncStub) -> None:
    go = await stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name=" go "))
    assert (go.tag.name, go.created) == ("go", True)
    again = await stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name="go"))
    assert (again.tag.id, again.created) == (go.tag.id, False)
    py = (await stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name="py"))).tag
    listed = await stub.ListUserTags(tag_pb2.ListUserTagsRequest(uid=AUTHOR))
    assert [t.name for t in listed.tags] == ["go", "py"]

    attached = await stub.AttachTags(
        tag_pb2.AttachTagsRequest(uid=AUTHOR, biz="article", biz_id=70, tag_ids=[py.id, go.tag.id])
    )
    assert ([t.name for t in attached.resource.tags], attached.resource.version) == (
        ["go", "py"],
        1,
    )
    read = await stub.GetResourceTags(
        tag_pb2.GetResourceTagsRequest(uid=OTHER, biz="article", biz_id=70)
    )
    assert read.resource == attached.resource
    page = await stub.ListResourcesByTag(
        tag_pb2.ListResourcesByTagRequest(uid=AUTHOR, tag_id=py.id, limit=1)
    )
    assert ([(r.biz, r.biz_id) for r in page.resources], page.next_cursor) == (
        [("article", 70)],
        "",
    )


async def test_refusals_over_the_wire(stub: TagServiceAsyncStub) -> None:
    go = (await stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name="go"))).tag
    assert await refusal(
        stub.AttachTags(
            tag_pb2.AttachTagsRequest(uid=AUTHOR, biz="article", biz_id=80, tag_ids=[go.id])
        )
    ) == (grpc.StatusCode.PERMISSION_DENIED, Reason.NOT_OWNER)
    assert await refusal(
        stub.AttachTags(
            tag_pb2.AttachTagsRequest(uid=AUTHOR, biz="article", biz_id=99, tag_ids=[go.id])
        )
    ) == (grpc.StatusCode.NOT_FOUND, Reason.TARGET_NOT_FOUND)
    assert await refusal(
        stub.ListResourcesByTag(
            tag_pb2.ListResourcesByTagRequest(uid=AUTHOR, tag_id=go.id, cursor="nope")
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_CURSOR)
    assert await refusal(stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name="x" * 33))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_NAME,
    )
    assert await refusal(stub.ListUserTags(tag_pb2.ListUserTagsRequest(uid=0))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_USER,
    )
    assert await refusal(
        stub.GetResourceTags(tag_pb2.GetResourceTagsRequest(uid=AUTHOR, biz="video", biz_id=1))
    ) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_BIZ)


async def test_every_tag_set_of_the_articles_is_listed_in_id_order_by_page(
    stub: TagServiceAsyncStub,
) -> None:
    go = (await stub.CreateTag(tag_pb2.CreateTagRequest(uid=AUTHOR, name="go"))).tag
    rust = (await stub.CreateTag(tag_pb2.CreateTagRequest(uid=OTHER, name="rust"))).tag
    await stub.AttachTags(
        tag_pb2.AttachTagsRequest(uid=OTHER, biz="article", biz_id=80, tag_ids=[rust.id])
    )
    await stub.AttachTags(
        tag_pb2.AttachTagsRequest(uid=AUTHOR, biz="article", biz_id=70, tag_ids=[go.id])
    )
    # Emptied by its author: listed with no tags at version 2, so a rebuild drops "go".
    await stub.AttachTags(tag_pb2.AttachTagsRequest(uid=AUTHOR, biz="article", biz_id=70))

    def sets(answer: tag_pb2.ListTagSetsResponse) -> list[tuple[int, int, list[str], int]]:
        return [(r.biz_id, r.uid, [t.name for t in r.tags], r.version) for r in answer.resources]

    first = await stub.ListTagSets(tag_pb2.ListTagSetsRequest(biz="article", limit=1))
    assert sets(first) == [(70, AUTHOR, [], 2)]
    second = await stub.ListTagSets(
        tag_pb2.ListTagSetsRequest(biz="article", after_biz_id=70, limit=1)
    )
    assert sets(second) == [(80, OTHER, ["rust"], 1)]
    assert (
        sets(await stub.ListTagSets(tag_pb2.ListTagSetsRequest(biz="article", after_biz_id=80)))
        == []
    )
    whole = await stub.ListTagSets(tag_pb2.ListTagSetsRequest(biz="article"))
    assert sets(whole) == sets(first) + sets(second)

    for request, reason in (
        (tag_pb2.ListTagSetsRequest(biz="video"), Reason.INVALID_BIZ),
        (tag_pb2.ListTagSetsRequest(biz="article", after_biz_id=-1), Reason.INVALID_CURSOR),
        (tag_pb2.ListTagSetsRequest(biz="article", limit=101), Reason.INVALID_LIMIT),
        (tag_pb2.ListTagSetsRequest(biz="article", limit=-1), Reason.INVALID_LIMIT),
    ):
        assert await refusal(stub.ListTagSets(request)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
