"""gRPC-level tests: the real process wiring (:func:`build_runner`) on a free port.

They check what clients such as the gateway rely on: status codes and the
``google.rpc.ErrorInfo`` reason and domain of every refusal, that nothing able to run script
comes back from any read RPC, author names from the user service (a stand-in server here,
since services do not import each other) and reads reaching the broker as events.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf.message import Message
from sqlalchemy import func, select

from devstack.infra import free_port
from kit.config import Mode
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    protobuf_decoder,
)
from kit.migrations import upgrade_async
from kit.sql import create_engine
from kit.tests.rpc import refusal_of
from services.article.__main__ import build_runner
from services.article.errors import DOMAIN, Reason
from services.article.events import (
    ARTICLE_PUBLISHED_TOPIC,
    ARTICLE_READS_TOPIC,
    ARTICLE_WITHDRAWN_TOPIC,
)
from services.article.repository.dao import ArticleOutboxRow
from services.article.settings import ArticleSettings
from webook.article.v1 import article_pb2
from webook.article.v1.article_pb2_grpc import ArticleServiceStub
from webook.events.v1 import events_pb2
from webook.user.v1 import user_pb2

if TYPE_CHECKING:
    # Exists only in the .pyi: the type of ArticleServiceStub on an asyncio channel.
    from webook.article.v1.article_pb2_grpc import ArticleServiceAsyncStub

pytestmark = pytest.mark.integration

ALICE, BOB = 11, 12
NICKNAMES = {ALICE: "Alice", BOB: "Bob"}


async def stand_in_get_by_ids(
    request: user_pb2.GetByIdsRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> user_pb2.GetByIdsResponse:
    """``UserService.GetByIds`` answered from :data:`NICKNAMES`, like the user service would."""
    return user_pb2.GetByIdsResponse(
        users={i: user_pb2.User(id=i, nickname=NICKNAMES[i]) for i in request.ids if i in NICKNAMES}
    )


@pytest.fixture
async def user_address() -> AsyncIterator[str]:
    """Address of a stand-in user service that only knows ``GetByIds``."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "webook.user.v1.UserService",
                {
                    "GetByIds": grpc.unary_unary_rpc_method_handler(
                        stand_in_get_by_ids,
                        request_deserializer=user_pb2.GetByIdsRequest.FromString,
                        response_serializer=user_pb2.GetByIdsResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@dataclass
class Article:
    """A running article service and a client of it."""

    stub: ArticleServiceAsyncStub
    settings: ArticleSettings


async def _start(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str, user_address: str, **extra: Any
) -> AsyncIterator[Article]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'article.db'}"
    await upgrade_async("article", database_url)
    settings = ArticleSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        peers={"user": user_address},
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        event_flush_timeout_seconds=2.0,
        **extra,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Article(ArticleServiceStub(channel), settings)
    finally:
        await runner.stop()


@pytest.fixture
async def article(
    tmp_path: Path, redis_url: str, redis_client: object, kafka_bootstrap: str, user_address: str
) -> AsyncIterator[Article]:
    """The article service with a working user service."""
    async for running in _start(tmp_path, redis_url, kafka_bootstrap, user_address):
        yield running


@pytest.fixture
def stub(article: Article) -> ArticleServiceAsyncStub:
    """A client of :func:`article`."""
    return article.stub


refusal = partial(refusal_of, domain=DOMAIN)


async def test_author_flow(stub: ArticleServiceAsyncStub) -> None:
    saved = await stub.Save(article_pb2.SaveRequest(author_id=ALICE, title="T", content="<p>c</p>"))
    draft = (await stub.GetById(article_pb2.GetByIdRequest(id=saved.id, author_id=ALICE))).article
    assert (draft.title, draft.content, draft.status) == (
        "T",
        "<p>c</p>",
        article_pb2.ARTICLE_STATUS_UNPUBLISHED,
    )
    assert draft.author.id == ALICE
    published = await stub.Publish(
        article_pb2.PublishRequest(id=saved.id, author_id=ALICE, title="T2", content="<p>c2</p>")
    )
    assert published.id == saved.id
    listed = (
        await stub.List(article_pb2.ListRequest(author_id=ALICE, offset=0, limit=10))
    ).articles
    assert [(a.id, a.title, a.abstract, a.status, a.content) for a in listed] == [
        (saved.id, "T2", "c2", article_pb2.ARTICLE_STATUS_PUBLISHED, "")
    ]
    reader = (
        await stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=saved.id, uid=BOB))
    ).article
    assert (reader.title, reader.content, reader.author.id, reader.author.name) == (
        "T2",
        "<p>c2</p>",
        ALICE,
        "Alice",
    )
    pub = (await stub.ListPub(article_pb2.ListPubRequest(end_time_ms=2**62, limit=10))).articles
    assert [(a.id, a.author.name) for a in pub] == [(saved.id, "Alice")]
    await stub.Withdraw(article_pb2.WithdrawRequest(id=saved.id, author_id=ALICE))
    code, reason = await refusal(
        stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=saved.id, uid=BOB))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


Call = Callable[["ArticleServiceAsyncStub", int], Awaitable[object]]

OTHERS_ARTICLE: dict[str, Call] = {
    "edit": lambda s, i: s.Save(
        article_pb2.SaveRequest(id=i, author_id=BOB, title="mine now", content="")
    ),
    "publish": lambda s, i: s.Publish(
        article_pb2.PublishRequest(id=i, author_id=BOB, title="mine now", content="<p>x</p>")
    ),
    "withdraw": lambda s, i: s.Withdraw(article_pb2.WithdrawRequest(id=i, author_id=BOB)),
    "read draft": lambda s, i: s.GetById(article_pb2.GetByIdRequest(id=i, author_id=BOB)),
}

UNKNOWN_ARTICLE: dict[str, Call] = {
    **OTHERS_ARTICLE,
    "read published": lambda s, i: s.GetPublishedById(
        article_pb2.GetPublishedByIdRequest(id=i, uid=BOB)
    ),
}


@pytest.mark.parametrize("action", sorted(OTHERS_ARTICLE))
async def test_another_users_article_is_refused(stub: ArticleServiceAsyncStub, action: str) -> None:
    created = await stub.Publish(
        article_pb2.PublishRequest(author_id=ALICE, title="Alice's", content="<p>a</p>")
    )
    assert await refusal(OTHERS_ARTICLE[action](stub, created.id)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        Reason.NOT_AUTHOR,
    )
    # Nothing changed.
    own = (await stub.GetById(article_pb2.GetByIdRequest(id=created.id, author_id=ALICE))).article
    assert (own.title, own.status) == ("Alice's", article_pb2.ARTICLE_STATUS_PUBLISHED)
    reader = await stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=created.id))
    assert reader.article.title == "Alice's"


@pytest.mark.parametrize("action", sorted(UNKNOWN_ARTICLE))
async def test_unknown_ids_are_not_found(stub: ArticleServiceAsyncStub, action: str) -> None:
    assert await refusal(UNKNOWN_ARTICLE[action](stub, 4242)) == (
        grpc.StatusCode.NOT_FOUND,
        Reason.NOT_FOUND,
    )


async def test_drafts_are_not_published(stub: ArticleServiceAsyncStub) -> None:
    draft = await stub.Save(article_pb2.SaveRequest(author_id=ALICE, title="d", content="<p>x</p>"))
    assert await refusal(
        stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=draft.id, uid=ALICE))
    ) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


async def test_published_exists_answers_which_articles_readers_can_open(
    stub: ArticleServiceAsyncStub,
) -> None:
    async def publish(author: int) -> int:
        answer = await stub.Publish(
            article_pb2.PublishRequest(author_id=author, title="t", content="<p>x</p>")
        )
        return int(answer.id)

    published, withdrawn = await publish(ALICE), await publish(BOB)
    await stub.Withdraw(article_pb2.WithdrawRequest(id=withdrawn, author_id=BOB))
    draft = await stub.Save(article_pb2.SaveRequest(author_id=ALICE, title="d", content="<p>x</p>"))
    asked = [published, withdrawn, draft.id, 4242, 0]
    answer = await stub.PublishedExists(article_pb2.PublishedExistsRequest(ids=asked))
    assert list(answer.published_ids) == [published]
    # Published again after a withdrawal: it exists again.
    await stub.Publish(
        article_pb2.PublishRequest(id=withdrawn, author_id=BOB, title="t", content="<p>y</p>")
    )
    answer = await stub.PublishedExists(article_pb2.PublishedExistsRequest(ids=asked))
    assert sorted(answer.published_ids) == sorted([published, withdrawn])
    assert await refusal(
        stub.PublishedExists(article_pb2.PublishedExistsRequest(ids=range(1, 102)))
    ) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.TOO_MANY_IDS)


async def test_get_published_author_names_the_author_and_title_of_published_articles_only(
    stub: ArticleServiceAsyncStub,
) -> None:
    published = await stub.Publish(
        article_pb2.PublishRequest(author_id=BOB, title="<b>Token</b> buckets", content="<p>x</p>")
    )
    answer = await stub.GetPublishedAuthor(article_pb2.GetPublishedAuthorRequest(id=published.id))
    assert (answer.author_id, answer.title) == (BOB, "Token buckets")
    # from the reader copy's cache the second time (a reader view filled it): same answer
    await stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=published.id, uid=ALICE))
    answer = await stub.GetPublishedAuthor(article_pb2.GetPublishedAuthorRequest(id=published.id))
    assert (answer.author_id, answer.title) == (BOB, "Token buckets")
    await stub.Withdraw(article_pb2.WithdrawRequest(id=published.id, author_id=BOB))
    draft = await stub.Save(article_pb2.SaveRequest(author_id=ALICE, title="d", content="<p>x</p>"))
    for article_id in (published.id, draft.id, 4242, 0, -1):
        assert await refusal(
            stub.GetPublishedAuthor(article_pb2.GetPublishedAuthorRequest(id=article_id))
        ) == (grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (article_pb2.ListRequest(author_id=ALICE, limit=0), Reason.INVALID_PAGE),
        (article_pb2.ListRequest(author_id=ALICE, limit=101), Reason.INVALID_PAGE),
        (article_pb2.ListRequest(author_id=0, limit=10), Reason.INVALID_AUTHOR),
        (article_pb2.ListPubRequest(end_time_ms=0, limit=10), Reason.INVALID_TIME_WINDOW),
        (article_pb2.SaveRequest(author_id=ALICE, title="t" * 257), Reason.INVALID_TITLE),
        (article_pb2.PublishRequest(author_id=ALICE, title="t"), Reason.INVALID_CONTENT),
    ],
)
async def test_invalid_input_is_refused(
    stub: ArticleServiceAsyncStub, request_: Message, reason: Reason
) -> None:
    method: Callable[[Any], Awaitable[object]] = {
        article_pb2.ListRequest: stub.List,
        article_pb2.ListPubRequest: stub.ListPub,
        article_pb2.SaveRequest: stub.Save,
        article_pb2.PublishRequest: stub.Publish,
    }[type(request_)]  # type: ignore[assignment]
    assert await refusal(method(request_)) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


# Script in every place an editor's HTML could carry it.
XSS_CONTENT = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<img src=x OnErRoR='alert(1)'>",
    '<body onload="alert(1)">',
    "<svg/onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<a href="javascript:alert(1)">a</a>',
    '<a href="JaVaScRiPt:alert(1)">b</a>',
    '<a href="java&#x09;script:alert(1)">c</a>',
    '<a href="&#106;avascript:alert(1)">d</a>',
    '<a href="vbscript:msgbox(1)">e</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">f</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><button>x</button></form>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<style>@import 'javascript:alert(1)';</style>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<p onmouseover="alert(1)">hover</p>',
    "<<script>script>alert(1)<</script>/script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]
XSS_TITLES = [
    "<script>alert(1)</script>Title",
    '<img src=x onerror="alert(1)">Title',
    "&lt;script&gt;alert(1)&lt;/script&gt;Title",
    '<a href="javascript:alert(1)">Title</a>',
]
DANGEROUS = re.compile(
    r"<\s*/?\s*(script|iframe|svg|object|embed|form|math|style|meta|body)"
    r"|\bon[a-z]+\s*="
    r"|javascript:|vbscript:|data:text/html|srcdoc|style\s*=",
    re.IGNORECASE,
)
ANY_TAG = re.compile(r"<\s*/?\s*[a-z!]", re.IGNORECASE)


def strings(message: Message) -> Iterator[str]:
    """Every string field in ``message``, recursively."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for item in values:
            if isinstance(item, Message):
                yield from strings(item)
            elif isinstance(item, str):
                yield item


def assert_harmless(responses: Sequence[Message]) -> None:
    for response in responses:
        for text in strings(response):
            assert not DANGEROUS.search(text), text
        for article in _articles(response):
            # Titles and abstracts are plain text: no markup at all.
            assert not ANY_TAG.search(article.title), article.title
            assert not ANY_TAG.search(article.abstract), article.abstract


def _articles(response: Message) -> list[article_pb2.Article]:
    if isinstance(response, article_pb2.ListResponse | article_pb2.ListPubResponse):
        return list(response.articles)
    return [getattr(response, "article")]  # noqa: B009 - every other response has one


async def test_nothing_that_runs_script_comes_back_from_any_read(
    stub: ArticleServiceAsyncStub,
) -> None:
    vectors = [(title, content) for title in XSS_TITLES for content in XSS_CONTENT[:3]] + [
        ("Title", content) for content in XSS_CONTENT
    ]
    responses: list[Message] = []
    for i, (title, content) in enumerate(vectors):
        body = f"<p>Kept <b>bold</b> <a href='https://example.com/{i}'>link</a></p>{content}"
        if i % 2:
            saved = await stub.Save(
                article_pb2.SaveRequest(author_id=ALICE, title=title, content=body)
            )
            article_id = saved.id
            await stub.Publish(
                article_pb2.PublishRequest(
                    id=article_id, author_id=ALICE, title=title, content=body
                )
            )
        else:
            article_id = (
                await stub.Publish(
                    article_pb2.PublishRequest(author_id=ALICE, title=title, content=body)
                )
            ).id
        author_view = await stub.GetById(article_pb2.GetByIdRequest(id=article_id, author_id=ALICE))
        # Formatting survives sanitising.
        assert "<b>bold</b>" in author_view.article.content
        assert f'href="https://example.com/{i}"' in author_view.article.content
        assert author_view.article.title.endswith("Title")
        responses += [
            author_view,
            await stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=article_id)),
            # Twice: the second read comes from the cache.
            await stub.GetPublishedById(article_pb2.GetPublishedByIdRequest(id=article_id)),
        ]
    for offset in range(0, len(vectors), 100):
        responses.append(
            await stub.List(article_pb2.ListRequest(author_id=ALICE, offset=offset, limit=100))
        )
        responses.append(
            await stub.ListPub(
                article_pb2.ListPubRequest(end_time_ms=2**62, offset=offset, limit=100)
            )
        )
    assert_harmless(responses)


async def test_reads_are_served_without_author_name_when_the_user_service_is_down(
    tmp_path: Path, redis_url: str, redis_client: object, kafka_bootstrap: str
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async for running in _start(tmp_path, redis_url, kafka_bootstrap, nobody):
        created = await running.stub.Publish(
            article_pb2.PublishRequest(author_id=ALICE, title="t", content="<p>x</p>")
        )
        reader = await running.stub.GetPublishedById(
            article_pb2.GetPublishedByIdRequest(id=created.id, uid=BOB)
        )
        assert (reader.article.title, reader.article.author.name) == ("t", "")
        listed = await running.stub.ListPub(article_pb2.ListPubRequest(end_time_ms=2**62, limit=5))
        assert [a.author.name for a in listed.articles] == [""]


async def test_reads_are_emitted_as_events(article: Article, kafka_bootstrap: str) -> None:
    reader = random.randrange(10**9, 2 * 10**9)
    created = await article.stub.Publish(
        article_pb2.PublishRequest(author_id=ALICE, title="t", content="<p>x</p>")
    )
    for _ in range(3):
        await article.stub.GetPublishedById(
            article_pb2.GetPublishedByIdRequest(id=created.id, uid=reader)
        )
    seen: list[events_pb2.ArticleRead] = []
    records = 0

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.ArticleReads]]) -> None:
        nonlocal records
        for event in batch:
            mine = [read for read in event.payload.reads if read.user_id == reader]
            records += bool(mine)
            seen.extend(mine)

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"test-reads-{reader}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_wait_s=0.2,
        ),
        {ARTICLE_READS_TOPIC: TopicHandler(protobuf_decoder(events_pb2.ArticleReads), collect)},
    )
    consumer.start()
    try:
        for _ in range(100):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert len(seen) == 3
    assert 1 <= records <= 3  # gathered into batches (one, unless a window ended between)
    assert {read.article_id for read in seen} == {created.id}
    assert all(read.at_ms > 0 for read in seen)
    assert all(read.traceparent == "" for read in seen)  # no trace sampled here


async def test_publications_and_withdrawals_go_through_the_outbox(
    article: Article, kafka_bootstrap: str
) -> None:
    author = random.randrange(10**9, 2 * 10**9)
    created = await article.stub.Publish(
        article_pb2.PublishRequest(author_id=author, title="t", content="<p>x</p>")
    )
    await article.stub.Withdraw(article_pb2.WithdrawRequest(id=created.id, author_id=author))
    seen: list[tuple[str, bytes | None]] = []

    async def published(batch: Sequence[ConsumedEvent[events_pb2.ArticlePublished]]) -> None:
        seen.extend(("published", e.key) for e in batch if e.payload.author_id == author)

    async def withdrawn(batch: Sequence[ConsumedEvent[events_pb2.ArticleWithdrawn]]) -> None:
        seen.extend(("withdrawn", e.key) for e in batch if e.payload.author_id == author)

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"test-outbox-{author}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_wait_s=0.2,
        ),
        {
            ARTICLE_PUBLISHED_TOPIC: TopicHandler(
                protobuf_decoder(events_pb2.ArticlePublished), published
            ),
            ARTICLE_WITHDRAWN_TOPIC: TopicHandler(
                protobuf_decoder(events_pb2.ArticleWithdrawn), withdrawn
            ),
        },
    )
    consumer.start()
    try:
        for _ in range(600):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    key = str(created.id).encode()
    assert sorted(seen) == [("published", key), ("withdrawn", key)]
    engine = create_engine(article.settings.database_url)
    try:
        async with engine.connect() as conn:
            unsent = await conn.scalar(
                select(func.count())
                .select_from(ArticleOutboxRow)
                .where(ArticleOutboxRow.sent_ms.is_(None))
            )
    finally:
        await engine.dispose()
    assert unsent == 0
