"""The search service's use cases on the real embedded index in a temporary directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.search.domain import DocKey, DocType, Removal, Upsert, article_doc, user_doc
from services.search.errors import Reason, SearchInvalidArgument
from services.search.index import TantivySearchIndex
from services.search.service import BatchedIndexWriter, SearchService

NOW = 1_800_000_000_000


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SearchService]:
    """A service on a fresh index with a short commit interval."""
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.05)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    await svc.put_article(
        article_doc(
            article_id=1,
            title="微服务架构入门",
            body="我们讨论微服务与服务网格, 以及 rate limiting",
            author_id=7,
            author_name="安妮",
            utime_ms=NOW,
        )
    )
    await svc.put_article(
        article_doc(
            article_id=2,
            title="限流算法",
            body="令牌桶 token buckets are running",
            author_id=8,
            author_name="Bob",
            utime_ms=NOW - 1,
        )
    )
    await svc.put_user(user_doc(user_id=7, nickname="安妮", about_me="写代码", utime_ms=NOW))
    yield svc
    await writer.stop()
    await index.close()


async def _ids(svc: SearchService, text: str, doc_type: int = 0) -> list[DocKey]:
    return [hit.key for hit in (await svc.search(text, doc_type, 0, 10)).hits]


async def test_chinese_and_english_queries_find_the_right_documents(
    service: SearchService,
) -> None:
    assert await _ids(service, "微服务") == [DocKey(DocType.ARTICLE, 1)]
    assert await _ids(service, "限流算法") == [DocKey(DocType.ARTICLE, 2)]
    assert await _ids(service, "token bucket run") == [DocKey(DocType.ARTICLE, 2)]
    assert await _ids(service, "安妮", DocType.USER) == [DocKey(DocType.USER, 7)]
    page = await service.search("微服务", 0, 0, 10)
    assert page.hits[0].title_html == "<em>微服务</em>架构入门"
    assert "<em>微服务</em>" in page.hits[0].snippet_html


@pytest.mark.parametrize(
    "query", ["", "   ", "x" * 201, "a\x00b", "esc\x1b[0m", "\ud800", "a " * 65, "限流算法" * 20]
)
async def test_malformed_queries_are_refused_clearly(service: SearchService, query: str) -> None:
    with pytest.raises(SearchInvalidArgument) as caught:
        await service.search(query, 0, 0, 10)
    assert caught.value.reason == Reason.INVALID_QUERY
    assert caught.value.message


async def test_a_withdrawn_article_disappears_and_a_stale_publish_cannot_revive_it(
    service: SearchService,
) -> None:
    await service.remove_article(1, version=NOW + 10)
    assert await _ids(service, "微服务", DocType.ARTICLE) == []
    stale = article_doc(
        article_id=1, title="微服务", body="", author_id=7, author_name="", utime_ms=NOW + 5
    )
    assert await service.apply([Upsert(stale, NOW + 5)], source="kafka") == 0
    assert await _ids(service, "微服务", DocType.ARTICLE) == []


async def test_a_pending_removal_is_hidden_before_its_commit(tmp_path: Path) -> None:
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.05)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    doc = article_doc(
        article_id=3, title="熔断", body="", author_id=1, author_name="", utime_ms=NOW
    )
    await svc.put_article(doc)
    await writer.stop()
    slow = BatchedIndexWriter(index, commit_interval_s=30)
    slow.start()
    svc = SearchService(index, slow, clock=lambda: NOW)
    removal = asyncio.create_task(
        svc.apply([Removal(DocKey(DocType.ARTICLE, 3), NOW + 1)], source="grpc")
    )
    for _ in range(100):
        if slow.pending:
            break
        await asyncio.sleep(0.01)
    assert await _ids(svc, "熔断") == []
    # stop() commits what is pending, so the waiting offer completes.
    await slow.stop()
    assert await removal == 1
    assert await _ids(svc, "熔断") == []
    await index.close()


async def test_the_index_answers_the_same_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "index"
    index = TantivySearchIndex(path)
    writer = BatchedIndexWriter(index, commit_interval_s=0.05)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    doc = article_doc(
        article_id=4, title="负载均衡", body="", author_id=1, author_name="", utime_ms=NOW
    )
    await svc.put_article(doc)
    before = await _ids(svc, "负载均衡")
    await writer.stop()
    await index.close()
    reopened = TantivySearchIndex(path)
    again = BatchedIndexWriter(reopened)
    svc = SearchService(reopened, again, clock=lambda: NOW)
    assert await _ids(svc, "负载均衡") == before == [DocKey(DocType.ARTICLE, 4)]
    await reopened.close()
