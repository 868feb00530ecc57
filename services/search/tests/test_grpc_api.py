"""gRPC-level tests on the real process wiring (:func:`build_runner`), sync consumer included.

The service runs in process on a temporary data directory and the session's broker; its
consumer reads the production topics (``webook.article.published``, ...), which other tests
of the session also write to, so every test works with ids and words of its own and checks
only those.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from prometheus_client import REGISTRY

from kit.config import Mode
from kit.events import BatchConsumer
from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.server import ServiceRunner
from services.search.__main__ import build_runner
from services.search.domain import MAX_TIME_MS
from services.search.errors import DOMAIN, Reason
from services.search.events import (
    ARTICLE_PUBLISHED_TOPIC,
    ARTICLE_WITHDRAWN_TOPIC,
    USER_CHANGED_TOPIC,
)
from services.search.settings import SearchSettings
from webook.events.v1 import events_pb2
from webook.search.v1 import search_pb2
from webook.search.v1.search_pb2_grpc import SearchServiceStub, SyncServiceStub

if TYPE_CHECKING:
    from webook.search.v1.search_pb2_grpc import SearchServiceAsyncStub, SyncServiceAsyncStub

pytestmark = pytest.mark.integration

ARTICLE = search_pb2.DOC_TYPE_ARTICLE
USER = search_pb2.DOC_TYPE_USER
# An edit or a withdrawal must show in results within this long after its event.
SYNC_DEADLINE_S = 5.0


@dataclass
class Running:
    """The service under test and clients of it."""

    runner: ServiceRunner
    search: SearchServiceAsyncStub
    sync: SyncServiceAsyncStub


def search_settings(data_dir: Path, kafka_bootstrap: str, **overrides: object) -> SearchSettings:
    """Test settings: a private data dir, short commit interval and consumer timings."""
    values: dict[str, object] = {
        "mode": Mode.TEST,
        "data_dir": str(data_dir),
        "kafka_bootstrap": kafka_bootstrap,
        "commit_interval_seconds": 0.1,
        "sync_batch_wait_seconds": 0.1,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "reindex_when_empty": False,
        "grpc_port": 0,
        "metrics_port": -1,
        "shutdown_grace": 1.0,
        **overrides,
    }
    return SearchSettings.model_validate(values)


@pytest.fixture
async def running(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Running]:
    """A search service from ``build_runner`` with its consumer in the group."""
    runner = build_runner(search_settings(tmp_path / "search", kafka_bootstrap))
    port = await runner.start()
    try:
        assert await runner.component(BatchConsumer).wait_assigned(20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Running(runner, SearchServiceStub(channel), SyncServiceStub(channel))
    finally:
        await runner.stop()


def new_id() -> int:
    """An id no other test of the session uses."""
    return random.randrange(10**12, 10**13)


def word() -> str:
    """A word no other document of the session contains."""
    return "zq" + uuid.uuid4().hex[:10]


async def hits(
    stub: SearchServiceAsyncStub,
    query: str,
    doc_type: search_pb2.DocType.ValueType = search_pb2.DOC_TYPE_UNSPECIFIED,
    limit: int = 50,
) -> list[tuple[int, int]]:
    """``(type, id)`` of the first results."""
    answer = await stub.Search(search_pb2.SearchRequest(query=query, type=doc_type, limit=limit))
    return [(hit.type, hit.id) for hit in answer.hits]


async def refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str, str]:
    """Status, ErrorInfo reason and message of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = app_error_from_rpc(caught.value)
    assert error.domain == DOMAIN
    return caught.value.code(), error.reason, error.message


async def within(
    seconds: float, check: Callable[[], Awaitable[bool]], *, step: float = 0.05
) -> float:
    """Seconds until ``check()`` holds; fails the test after ``seconds``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not reflected within {seconds} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


def article(
    article_id: int, title: str, content: str, *, utime_ms: int, status: int = 2
) -> search_pb2.ArticleDoc:
    """An article as the sync input takes it."""
    return search_pb2.ArticleDoc(
        id=article_id,
        title=title,
        content=content,
        author_id=9,
        author_name="Ada",
        status=status,
        utime_ms=utime_ms,
    )


async def test_chinese_and_english_queries_through_the_sync_input(running: Running) -> None:
    tag = word()
    now = int(time.time() * 1000)
    micro, limits, user_id = new_id(), new_id(), new_id()
    await running.sync.InputArticle(
        search_pb2.InputArticleRequest(
            article=article(
                micro, f"微服务架构 {tag}", "<p>服务发现与<b>负载均衡</b></p>", utime_ms=now
            )
        )
    )
    await running.sync.InputArticle(
        search_pb2.InputArticleRequest(
            article=article(
                limits,
                f"限流算法 {tag}",
                "<p>Token buckets and leaky buckets are running everywhere</p>",
                utime_ms=now - 1000,
            )
        )
    )
    await running.sync.InputUser(
        search_pb2.InputUserRequest(
            user=search_pb2.UserDoc(id=user_id, nickname=f"微服务爱好者 {tag}", about_me="限流")
        )
    )
    assert await hits(running.search, f"微服务 {tag}", ARTICLE) == [(ARTICLE, micro)]
    assert await hits(running.search, f"限流算法 {tag}") == [(ARTICLE, limits)]
    assert await hits(running.search, f"{tag} bucket run") == [(ARTICLE, limits)]
    assert await hits(running.search, f"微服务 {tag}", USER) == [(USER, user_id)]
    both = await hits(running.search, f"微服务 {tag}")
    assert sorted(both) == sorted([(ARTICLE, micro), (USER, user_id)])

    answer = await running.search.Search(search_pb2.SearchRequest(query=f"负载均衡 {tag}"))
    (hit,) = answer.hits
    assert (hit.id, hit.title, hit.author_name, hit.utime_ms) == (
        micro,
        f"微服务架构 {tag}",
        "Ada",
        now,
    )
    assert "<em>负载均衡</em>" in hit.snippet
    assert f"<em>{tag}</em>" in hit.title_highlight

    page = await running.search.Search(
        search_pb2.SearchRequest(query=tag, type=ARTICLE, offset=1, limit=1)
    )
    assert page.total == 2
    assert len(page.hits) == 1


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", Reason.INVALID_QUERY),
        ("bell\x07", Reason.INVALID_QUERY),
        ("微" * 80, Reason.INVALID_QUERY),
        ("x" * 201, Reason.INVALID_QUERY),
    ],
)
async def test_malformed_queries_are_refused_with_a_clear_reason(
    running: Running, query: str, reason: Reason
) -> None:
    code, got, message = await refusal(running.search.Search(search_pb2.SearchRequest(query=query)))
    assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert "query" in message


@pytest.mark.parametrize(
    "request_",
    [
        search_pb2.SearchRequest(query="a", limit=51),
        search_pb2.SearchRequest(query="a", offset=-1),
        search_pb2.SearchRequest(query="a", offset=990, limit=20),
    ],
)
async def test_pages_out_of_bounds_are_refused(
    running: Running, request_: search_pb2.SearchRequest
) -> None:
    code, reason, _ = await refusal(running.search.Search(request_))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE)


async def test_invalid_documents_are_refused(running: Running) -> None:
    for call in (
        running.sync.InputArticle(search_pb2.InputArticleRequest()),
        running.sync.InputUser(search_pb2.InputUserRequest(user=search_pb2.UserDoc(id=-1))),
        running.sync.DeleteArticle(search_pb2.DeleteArticleRequest(id=0)),
    ):
        code, reason, _ = await refusal(call)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_DOCUMENT)


@pytest.mark.parametrize("status", [2, 3])
async def test_a_time_past_year_9999_is_refused_at_write_time(
    running: Running, status: int
) -> None:
    # A utime near 2**63 would pin the document's version forever and break every page of
    # results that shows it; refused before anything is written.
    tag = word()
    doc = article(new_id(), tag, "", utime_ms=2**63 - 1, status=status)
    code, reason, message = await refusal(
        running.sync.InputArticle(search_pb2.InputArticleRequest(article=doc))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_DOCUMENT)
    assert message.startswith("utime_ms is out of range")
    assert await hits(running.search, tag) == []
    latest = article(doc.id, tag, "", utime_ms=MAX_TIME_MS)
    await running.sync.InputArticle(search_pb2.InputArticleRequest(article=latest))
    assert await hits(running.search, tag) == [(search_pb2.DOC_TYPE_ARTICLE, doc.id)]


async def test_unpublished_input_and_delete_remove_an_article(running: Running) -> None:
    tag = word()
    first, second = new_id(), new_id()
    for article_id in (first, second):
        await running.sync.InputArticle(
            search_pb2.InputArticleRequest(article=article(article_id, tag, "", utime_ms=1000))
        )
    assert len(await hits(running.search, tag)) == 2
    await running.sync.InputArticle(
        search_pb2.InputArticleRequest(article=article(first, tag, "", utime_ms=2000, status=3))
    )
    await running.sync.DeleteArticle(search_pb2.DeleteArticleRequest(id=second))
    assert await hits(running.search, tag) == []


async def _produce(bootstrap: str, *records: tuple[str, int, Message | bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value in records:
            raw = value if isinstance(value, bytes) else value.SerializeToString()
            await producer.send_and_wait(topic, raw, key=str(key).encode())
    finally:
        await producer.stop()


async def test_events_publish_edit_and_withdraw_are_reflected_within_seconds(
    running: Running, kafka_bootstrap: str
) -> None:
    tag, edited = word(), word()
    article_id, user_id = new_id(), new_id()
    now = int(time.time() * 1000)

    def published(title: str, utime_ms: int) -> events_pb2.ArticlePublished:
        return events_pb2.ArticlePublished(
            article_id=article_id,
            title=title,
            content="<p>限流算法: token bucket</p>",
            author_id=3,
            author_name="Bob",
            utime_ms=utime_ms,
            at_ms=utime_ms,
        )

    await _produce(
        kafka_bootstrap,
        (ARTICLE_PUBLISHED_TOPIC, article_id, published(f"微服务 {tag}", now)),
        (
            USER_CHANGED_TOPIC,
            user_id,
            events_pb2.UserChanged(user_id=user_id, nickname=tag, about_me="微服务", at_ms=now),
        ),
    )

    async def found(
        query: str,
        expected: list[tuple[int, int]],
        doc_type: search_pb2.DocType.ValueType = search_pb2.DOC_TYPE_UNSPECIFIED,
    ) -> bool:
        return await hits(running.search, query, doc_type) == expected

    await within(SYNC_DEADLINE_S, lambda: found(f"限流算法 {tag}", [(ARTICLE, article_id)]))
    await within(SYNC_DEADLINE_S, lambda: found(tag, [(USER, user_id)], USER))

    # An edit: the new title is found, the old one no longer.
    await _produce(
        kafka_bootstrap,
        (ARTICLE_PUBLISHED_TOPIC, article_id, published(f"微服务 {edited}", now + 10)),
        (
            USER_CHANGED_TOPIC,
            user_id,
            events_pb2.UserChanged(user_id=user_id, nickname=edited, at_ms=now + 10),
        ),
    )
    await within(SYNC_DEADLINE_S, lambda: found(edited, [(ARTICLE, article_id)], ARTICLE))
    await within(SYNC_DEADLINE_S, lambda: found(edited, [(USER, user_id)], USER))
    assert await hits(running.search, tag) == []

    # A withdrawal, then a duplicate of the older publish (at-least-once, another topic):
    # the article stays out of the results.
    await _produce(
        kafka_bootstrap,
        (
            ARTICLE_WITHDRAWN_TOPIC,
            article_id,
            events_pb2.ArticleWithdrawn(article_id=article_id, author_id=3, at_ms=now + 20),
        ),
    )
    await within(SYNC_DEADLINE_S, lambda: found(edited, [], ARTICLE))
    await _produce(
        kafka_bootstrap,
        (ARTICLE_PUBLISHED_TOPIC, article_id, published(f"微服务 {edited}", now + 10)),
    )
    marker = new_id()
    await _produce(
        kafka_bootstrap,
        (
            ARTICLE_PUBLISHED_TOPIC,
            marker,
            events_pb2.ArticlePublished(article_id=marker, title=f"{edited} marker", utime_ms=now),
        ),
    )
    # Once the later marker is in, the stale publish before it has been applied (ignored).
    await within(SYNC_DEADLINE_S, lambda: found(f"{edited} marker", [(ARTICLE, marker)]))
    assert await hits(running.search, edited, ARTICLE) == [(ARTICLE, marker)]

    # A later publish brings it back.
    await _produce(
        kafka_bootstrap,
        (ARTICLE_PUBLISHED_TOPIC, article_id, published(f"微服务 {edited}", now + 30)),
    )
    await within(
        SYNC_DEADLINE_S,
        lambda: found(f"微服务 {edited}", [(ARTICLE, article_id)], ARTICLE),
    )


async def test_undecodable_records_are_skipped_and_counted(
    running: Running, kafka_bootstrap: str
) -> None:
    group = running.runner.component(BatchConsumer).group_id
    labels = {"topic": USER_CHANGED_TOPIC, "group": group, "result": "undecodable"}
    before = REGISTRY.get_sample_value("webook_kafka_consumed_total", labels) or 0.0
    tag, user_id = word(), new_id()
    await _produce(
        kafka_bootstrap,
        (USER_CHANGED_TOPIC, 1, b"\xff\xff\xff"),
        (USER_CHANGED_TOPIC, 1, events_pb2.UserChanged(nickname="no id", at_ms=1)),
        (
            USER_CHANGED_TOPIC,
            user_id,
            events_pb2.UserChanged(user_id=user_id, nickname=tag, at_ms=int(time.time() * 1000)),
        ),
    )

    async def found() -> bool:
        return await hits(running.search, tag) == [(USER, user_id)]

    await within(SYNC_DEADLINE_S, found)
    after = REGISTRY.get_sample_value("webook_kafka_consumed_total", labels) or 0.0
    assert after - before >= 2
