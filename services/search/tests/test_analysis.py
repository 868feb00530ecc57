"""Text analysis: Han n-grams, query rewriting, HTML to text, highlights; and the ranking rules
that depend on them (recency re-ranking, type filters with explicit fields)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.search.analysis import (
    MAX_GRAM,
    han_grams,
    highlight,
    html_to_text,
    search_query,
    search_text,
)
from services.search.domain import DocKey, DocType, article_doc, user_doc
from services.search.index import TantivySearchIndex
from services.search.service import BatchedIndexWriter, SearchService

NOW = 1_800_000_000_000
DAY = 86_400_000


def test_han_runs_become_every_gram_up_to_the_maximum() -> None:
    assert han_grams("微服务") == ["微", "微服", "微服务", "服", "服务", "务"]
    assert max(len(g) for g in han_grams("分布式一致性协议")) == MAX_GRAM
    assert search_text("用微服务, token buckets") == (
        " 用 用微 用微服 用微服务 微 微服 微服务 服 服务 务 , token buckets"
    )


@pytest.mark.parametrize(
    ("query", "rewritten"),
    [
        ("微服务", "微服务"),
        ("限流算法 token", "限流算法 token"),
        ("微服务架构设计", "(微服务架 服务架构 务架构设 架构设计)"),
        ("微服务grpc", "微服务 grpc"),
        ('"微服务 架构"', "微服务 架构"),
        ('"leaky bucket"', '"leaky bucket"'),
        ("-熔断 kubernetes", "-熔断 kubernetes"),
        ("title:限流 about:rust", "title_s:限流 about_s:rust"),
        ("Python: tips", "Python: tips"),
    ],
)
def test_queries_are_rewritten_for_the_searched_fields(query: str, rewritten: str) -> None:
    assert search_query(query) == rewritten


def test_html_becomes_readable_text() -> None:
    assert html_to_text("<h1>标题</h1><p>a &amp; b<script>x()</script></p>c") == "标题 a & b c"
    assert html_to_text("plain   text") == "plain text"


def test_highlights_escape_and_merge_adjacent_ranges() -> None:
    text = "<b>微服务</b> 架构"
    raw = text.encode()
    start = raw.index("微".encode())
    end = raw.index(b"</b>")
    assert highlight(text, [(start, end)]) == "&lt;b&gt;<em>微服务</em>&lt;/b&gt; 架构"
    assert highlight("a b c", [(0, 1), (2, 3)]) == "<em>a b</em> c"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SearchService]:
    """A service on a fresh index."""
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.02)
    writer.start()
    yield SearchService(index, writer, clock=lambda: NOW)
    await writer.stop()
    await index.close()


async def _put(svc: SearchService, article_id: int, title: str, body: str, utime: int) -> None:
    doc = article_doc(
        article_id=article_id, title=title, body=body, author_id=1, author_name="", utime_ms=utime
    )
    await svc.put_article(doc)


async def test_among_equal_matches_the_recent_one_ranks_first(service: SearchService) -> None:
    await _put(service, 1, "熔断器", "旧文", NOW - 400 * DAY)
    await _put(service, 2, "熔断器", "新文", NOW - 2 * DAY)
    await _put(service, 3, "熔断器", "上月", NOW - 20 * DAY)
    page = await service.search("熔断器", 0, 0, 10)
    assert [hit.key.id for hit in page.hits] == [2, 3, 1]
    assert page.total == 3
    # Pages are cut from the same order.
    second = await service.search("熔断器", 0, 1, 1)
    assert [hit.key.id for hit in second.hits] == [3]


async def test_a_much_better_match_beats_recency(service: SearchService) -> None:
    await _put(service, 1, "限流算法", "限流算法: 令牌桶与漏桶的限流算法", NOW - 400 * DAY)
    await _put(service, 2, "周报", "提到一次限流算法", NOW)
    for i in range(3, 30):
        await _put(service, i, f"杂谈 {i}", "无关内容", NOW)
    page = await service.search("限流算法", 0, 0, 10)
    assert [hit.key.id for hit in page.hits] == [1, 2]


async def test_field_names_are_text_and_the_type_chooses_the_fields(
    service: SearchService,
) -> None:
    await _put(service, 1, "kubernetes", "", NOW)
    await _put(service, 2, "title: kubernetes basics", "", NOW)
    await service.put_user(user_doc(user_id=9, nickname="kube fan", about_me="", utime_ms=NOW))
    # "title:" is the word "title", not a field: only the article containing it matches.
    assert [h.key for h in (await service.search("title:kubernetes", 1, 0, 10)).hits] == [
        DocKey(DocType.ARTICLE, 2)
    ]
    assert [h.key for h in (await service.search("title:kubernetes", 2, 0, 10)).hits] == []
    assert [h.key for h in (await service.search("nickname:kube", 2, 0, 10)).hits] == []
    assert [h.key for h in (await service.search("kube", 2, 0, 10)).hits] == [
        DocKey(DocType.USER, 9)
    ]
    assert [h.key for h in (await service.search("kube", 1, 0, 10)).hits] == []


async def test_long_chinese_queries_and_mixed_words(service: SearchService) -> None:
    await _put(service, 1, "分布式一致性协议入门", "Raft 与 Paxos", NOW)
    await _put(service, 2, "一致性哈希", "分布式缓存", NOW)
    assert [h.key.id for h in (await service.search("分布式一致性", 0, 0, 10)).hits] == [1]
    assert [h.key.id for h in (await service.search("一致性raft", 0, 0, 10)).hits] == [1]
    hit = (await service.search("一致性协议", 0, 0, 10)).hits[0]
    assert hit.title_html == "分布式<em>一致性协议</em>入门"
