"""Benchmark of the embedded search index: query latency at 10k and 100k documents, indexing
rate, and the measurement behind the Chinese segmentation choice.

Run ``python -m bench.search`` (about two minutes on the 2-core reference machine; no other
process is started). A deterministic synthetic corpus of Chinese and English technical
articles (plus one user per ten articles) is built from a vocabulary with a Zipf-like word
frequency, so that queries range from rare to very common words.

1. **Scale.** Documents go into the production index
   (:class:`services.search.index.TantivySearchIndex`) through the production write path
   (:meth:`SearchService.apply <services.search.service.SearchService.apply>`: version checks,
   group commits of ``CHUNK`` changes): one index of the first ``SMALL`` documents, one of
   ``LARGE``. Once tantivy's background merges have settled in both, every query of
   :data:`QUERIES` runs ``REPEAT`` times on each, in alternating rounds, through
   :meth:`SearchService.search` (parse, match, rank with the recency boost, count, snippets
   of a 10-hit page). The headline is the median latency at ``LARGE`` ÷ at ``SMALL``
   (goal ≤ 2); the indexing rate is documents applied per second over the large build.
2. **Segmentation** (``--no-segmentation`` skips it). ``SEG_DOCS`` documents are indexed
   three ways: with the production analyzer (runs of Han characters as all their 1-4
   character n-grams, so a Chinese query of up to four characters is one term), with single
   characters (queries as phrases), and with ``rjieba`` dictionary segmentation
   (``cut_for_search`` when indexing, ``cut`` for queries, words ANDed — how jieba is used
   with Lucene-like engines). For each Chinese query, the documents whose text contains the
   query string are the truth: recall and precision, query latency and indexing rate of each
   are printed (informative rows).

The exit code is 1 when the latency ratio misses its goal.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import rjieba
import tantivy

from bench._report import result
from services.search.analysis import search_analyzer, search_query, search_text, text_analyzer
from services.search.domain import DocType, Upsert, article_doc, user_doc
from services.search.index import TantivySearchIndex
from services.search.service import BatchedIndexWriter, SearchService

SMALL: Final = 10_000
LARGE: Final = 100_000
CHUNK: Final = 2_000
REPEAT: Final = 15
SEG_DOCS: Final = 20_000
GOAL: Final = 2.0
SEED: Final = 20_260_101
NOW_MS: Final = 1_800_000_000_000
DAY_MS: Final = 86_400_000

CHINESE_WORDS: Final = (
    "微服务 限流 算法 熔断 降级 负载均衡 缓存 数据库 索引 分布式 一致性 消息队列 事务 "
    "服务发现 注册中心 网关 监控 告警 日志 链路追踪 容器 调度 弹性 扩容 高可用 可观测性 "
    "令牌桶 漏桶 滑动窗口 计数器 哈希 分片 副本 选举 心跳 租约 超时 重试 幂等 "
    "序列化 协议 接口 性能 延迟 吞吐 并发 线程 协程 异步 同步 锁 队列 "
    "架构 设计 实践 经验 总结 入门 进阶 原理 源码 分析 优化 方案 问题 排查 "
    "用户 文章 评论 点赞 收藏 关注 阅读 推荐 搜索 排序 召回 服务器 客户端 "
    "我们 如何 为什么 这个 一个 可以 需要 通过 使用 实现 支持 提供 进行 系统 应用"
).split()
CHINESE_GLUE: Final = ("的", "和", "与", "在", "是", "了", "中", "对", "把", "从")
ENGLISH_WORDS: Final = (
    "token bucket leaky window rate limiting circuit breaker retry timeout deadline "
    "kubernetes container service mesh gateway proxy cache redis kafka consumer producer "
    "partition replica leader election consensus raft database index query transaction "
    "latency throughput benchmark profile python rust golang asyncio grpc protobuf "
    "search engine ranking relevance tokenizer stemming running runs bucket buckets "
    "design pattern practice lesson introduction advanced internals analysis tuning"
).split()

QUERIES: Final = (
    "微服务",
    "限流算法",
    "负载均衡",
    "分布式 缓存",
    "令牌桶",
    "服务发现",
    "token bucket",
    "circuit breaker",
    "kubernetes",
    "rate limiting",
    "微服务 grpc",
    '"leaky bucket"',
)
SEG_QUERIES: Final = (
    "微服务",
    "限流算法",
    "负载均衡",
    "令牌桶",
    "服务发现",
    "注册中心",
    "滑动窗口",
    "链路追踪",
    "高可用",
    "服务器",
    "一致性",
    "消息队列",
)


def _zipf_choice(rng: random.Random, words: Sequence[str]) -> str:
    # Rank r is picked with weight ~ 1/r: a few very common words, a long tail of rare ones.
    index = min(int(len(words) ** rng.random()) - 1, len(words) - 1)
    return words[max(index, 0)]


def _chinese_sentence(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(4, 9)):
        parts.append(_zipf_choice(rng, CHINESE_WORDS))
        if rng.random() < 0.4:
            parts.append(rng.choice(CHINESE_GLUE))
    return "".join(parts) + "。"


def _english_sentence(rng: random.Random) -> str:
    words = [_zipf_choice(rng, ENGLISH_WORDS) for _ in range(rng.randint(5, 10))]
    return " ".join(words).capitalize() + ". "


@dataclass(frozen=True, slots=True)
class SourceDoc:
    """A generated document."""

    id: int
    kind: DocType
    title: str
    body: str
    utime_ms: int


def corpus(count: int, seed: int = SEED) -> Iterator[SourceDoc]:
    """``count`` documents: ten articles (mostly Chinese, some English) per user."""
    rng = random.Random(seed)
    for i in range(1, count + 1):
        utime = NOW_MS - rng.randrange(0, 730) * DAY_MS
        if i % 11 == 0:
            nickname = "".join(rng.choice(CHINESE_WORDS) for _ in range(2)) + str(i)
            about = _chinese_sentence(rng) + _english_sentence(rng)
            yield SourceDoc(i, DocType.USER, nickname, about, utime)
            continue
        english = rng.random() < 0.3
        title_words = [_zipf_choice(rng, CHINESE_WORDS) for _ in range(rng.randint(2, 4))]
        if english:
            title = " ".join(_zipf_choice(rng, ENGLISH_WORDS) for _ in range(rng.randint(3, 6)))
        else:
            title = "".join(title_words)
        sentences = [
            _english_sentence(rng) if english or rng.random() < 0.2 else _chinese_sentence(rng)
            for _ in range(rng.randint(3, 8))
        ]
        yield SourceDoc(i, DocType.ARTICLE, title, "".join(sentences), utime)


def _change(doc: SourceDoc) -> Upsert:
    if doc.kind is DocType.USER:
        return Upsert(
            user_doc(user_id=doc.id, nickname=doc.title, about_me=doc.body, utime_ms=doc.utime_ms),
            doc.utime_ms,
        )
    return Upsert(
        article_doc(
            article_id=doc.id,
            title=doc.title,
            body=doc.body,
            author_id=doc.id % 997 + 1,
            author_name=f"作者{doc.id % 997 + 1}",
            utime_ms=doc.utime_ms,
        ),
        doc.utime_ms,
    )


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- 1. scale ---------------------------------------------------------------------------


@dataclass
class Latency:
    """Query latency at one corpus size."""

    docs: int
    samples: list[float]

    @property
    def p50_ms(self) -> float:
        """Median, milliseconds."""
        return statistics.median(self.samples) * 1000

    @property
    def p99_ms(self) -> float:
        """99th percentile, milliseconds."""
        return statistics.quantiles(self.samples, n=100)[98] * 1000


async def settled(index: TantivySearchIndex, *, quiet_s: float = 1.5, within_s: float = 60) -> int:
    """Wait until tantivy's background merges are over (the segment count stays put).

    A commit starts merges in background threads; queries timed while they run measure the
    merging on 2 cores more than the index. Both sizes are measured settled.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    segments, stable_since = index.num_segments(), loop.time()
    while loop.time() < deadline and loop.time() - stable_since < quiet_s:
        await asyncio.sleep(0.25)
        now_segments = index.num_segments()
        if now_segments != segments:
            segments, stable_since = now_segments, loop.time()
    return segments


async def _query_round(service: SearchService, samples: list[float]) -> dict[str, int]:
    """Every query once, sequentially; appends each latency; returns the match counts."""
    totals: dict[str, int] = {}
    for query in QUERIES:
        started = time.perf_counter()
        page = await service.search(query, 0, 0, 10)
        samples.append(time.perf_counter() - started)
        totals[query] = page.total
    return totals


async def measure_alternating(services: dict[int, SearchService]) -> dict[int, Latency]:
    """``REPEAT`` rounds of every query on each index in turn (after one warm-up round).

    Alternating rounds, as the other benchmarks do, so that whatever else slows the machine
    for a while slows every size alike.
    """
    samples: dict[int, list[float]] = {docs: [] for docs in services}
    totals: dict[int, dict[str, int]] = {}
    for service in services.values():
        await _query_round(service, [])
    for _ in range(REPEAT):
        for docs, service in services.items():
            totals[docs] = await _query_round(service, samples[docs])
    latencies = {docs: Latency(docs, samples[docs]) for docs in services}
    for docs, latency in latencies.items():
        print(
            f"{docs:>7} docs: query p50 {latency.p50_ms:6.2f} ms, p99 {latency.p99_ms:6.2f} ms "
            f"({len(latency.samples)} queries); matches: "
            + ", ".join(f"{q} {n}" for q, n in totals[docs].items())
        )
    return latencies


async def _fill(service: SearchService, docs: int) -> float:
    """Index the first ``docs`` documents of the corpus; returns the seconds spent writing."""
    seconds = 0.0
    batch: list[Upsert] = []
    for doc in corpus(docs):
        batch.append(_change(doc))
        if len(batch) == CHUNK:
            started = time.perf_counter()
            await service.apply(batch, source="bench")
            seconds += time.perf_counter() - started
            batch = []
    return seconds


async def scale(scratch: Path) -> tuple[Latency, Latency, float]:
    """Indexes of ``SMALL`` and ``LARGE`` documents; their latencies, and indexing docs/s."""
    opened: list[tuple[TantivySearchIndex, BatchedIndexWriter]] = []
    services: dict[int, SearchService] = {}
    try:
        rate = 0.0
        for docs in (SMALL, LARGE):
            index = TantivySearchIndex(scratch / f"scale-{docs}", writer_heap_bytes=128_000_000)
            writer = BatchedIndexWriter(index, commit_interval_s=0.05, max_batch=CHUNK)
            writer.start()
            opened.append((index, writer))
            services[docs] = SearchService(index, writer, clock=lambda: NOW_MS)
            seconds = await _fill(services[docs], docs)
            print(f"{docs:>7} docs: {await settled(index)} segments once merges settled")
            if docs == LARGE:
                rate = LARGE / seconds
                size = _directory_bytes(scratch / f"scale-{docs}")
                print(
                    f"indexing: {LARGE} documents in {seconds:.1f} s of writes "
                    f"= {rate:.0f} docs/s; index size {size / 1e6:.1f} MB"
                )
        latencies = await measure_alternating(services)
    finally:
        for index, writer in opened:
            await writer.stop()
            await index.close()
    return latencies[SMALL], latencies[LARGE], rate


# -- 2. segmentation --------------------------------------------------------------------


@dataclass
class SegmentationResult:
    """How one way of cutting Chinese text did on the Chinese queries."""

    name: str
    recall: float
    precision: float
    docs_per_s: float
    size_bytes: int
    query_p50_ms: float


@dataclass(frozen=True)
class Segmenter:
    """One way of indexing and querying Chinese: the text indexed, the analyzer, the query."""

    name: str
    analyzer: tantivy.TextAnalyzer
    index_text: Callable[[str], str]
    query: Callable[[tantivy.Index, tantivy.Schema, str], tantivy.Query]


def _parsed(index: tantivy.Index, schema: tantivy.Schema, q: str) -> tantivy.Query:
    return index.parse_query(q, default_field_names=["text"], conjunction_by_default=True)


def _jieba_query(index: tantivy.Index, schema: tantivy.Schema, q: str) -> tantivy.Query:
    terms = [w for w in rjieba.cut(q) if w.strip()]
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Must, tantivy.Query.term_query(schema, "text", t)) for t in terms]
    )


def _whitespace_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace())
        .filter(tantivy.Filter.lowercase())
        .build()
    )


SEGMENTERS: Final = (
    # The first design: Han unigrams, a Chinese query is a phrase of characters.
    Segmenter("unigram", text_analyzer(), lambda text: text, _parsed),
    # Production: Han 1..4-grams as terms (analysis.search_text / search_query).
    Segmenter(
        "n-gram",
        search_analyzer(),
        search_text,
        lambda index, schema, q: _parsed(index, schema, search_query(q)),
    ),
    # Dictionary words: cut_for_search when indexing, cut for queries, words ANDed.
    Segmenter(
        "rjieba",
        _whitespace_analyzer(),
        lambda text: " ".join(w for w in rjieba.cut_for_search(text) if w.strip()),
        _jieba_query,
    ),
)


def _truth(docs: Sequence[SourceDoc], query: str) -> set[int]:
    return {d.id for d in docs if query in d.title or query in d.body}


def measure_segmenter(
    segmenter: Segmenter, docs: Sequence[SourceDoc], scratch: Path
) -> SegmentationResult:
    """Index ``docs`` (title + body in one field) and run the Chinese queries."""
    path = scratch / segmenter.name
    path.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("doc_id", stored=True)
    builder.add_text_field("text", stored=False, tokenizer_name="seg")
    schema = builder.build()
    index = tantivy.Index(schema, path=str(path))
    index.register_tokenizer("seg", segmenter.analyzer)
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    started = time.perf_counter()
    for doc in docs:
        text = segmenter.index_text(doc.title + " " + doc.body)
        writer.add_document(tantivy.Document(doc_id=doc.id, text=text))
    writer.commit()
    seconds = time.perf_counter() - started
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    hit = relevant = returned = 0
    samples: list[float] = []
    for q in SEG_QUERIES:
        query = segmenter.query(index, schema, q)
        found_hits = searcher.search(query, limit=len(docs), count=False).hits
        found = {int(searcher.doc(address).get_first("doc_id") or 0) for _, address in found_hits}
        truth = _truth(docs, q)
        hit, relevant, returned = (
            hit + len(found & truth),
            relevant + len(truth),
            returned + len(found),
        )
        if found != truth:
            print(
                f"  {segmenter.name}: {q}: {len(truth)} contain it, "
                f"missed {len(truth - found)}, extra {len(found - truth)}"
            )
        for _ in range(REPEAT):
            began = time.perf_counter()
            searcher.search(segmenter.query(index, schema, q), limit=10, count=True)
            samples.append(time.perf_counter() - began)
    return SegmentationResult(
        segmenter.name,
        hit / relevant,
        hit / max(returned, 1),
        len(docs) / seconds,
        _directory_bytes(path),
        statistics.median(samples) * 1000,
    )


def segmentation(scratch: Path) -> dict[str, SegmentationResult]:
    """Every segmenter on the same documents."""
    docs = list(corpus(SEG_DOCS, seed=SEED + 1))
    results = {s.name: measure_segmenter(s, docs, scratch) for s in SEGMENTERS}
    print(f"segmentation over {SEG_DOCS} documents, {len(SEG_QUERIES)} Chinese queries:")
    for r in results.values():
        print(
            f"  {r.name:>8}: recall {r.recall:.3f}, precision {r.precision:.3f}, "
            f"{r.docs_per_s:6.0f} docs/s, index {r.size_bytes / 1e6:5.1f} MB, "
            f"query p50 {r.query_p50_ms:.3f} ms"
        )
    return results


# -- main -------------------------------------------------------------------------------


async def run(scratch: Path, *, with_segmentation: bool) -> float:
    """Measure and report; returns the latency ratio."""
    small, large, rate = await scale(scratch)
    ratio = large.p50_ms / small.p50_ms
    print(
        f"query latency {LARGE // 1000}k / {SMALL // 1000}k docs: {ratio:.2f} "
        f"(p50 {large.p50_ms:.2f} / {small.p50_ms:.2f} ms; goal <= {GOAL:.0f})"
    )
    result(
        f"search query p50, {LARGE // 1000}k vs {SMALL // 1000}k docs",
        f"{large.p50_ms:.2f} ms",
        f"{small.p50_ms:.2f} ms",
        ratio,
        f"<= {GOAL:.0f}",
        ratio <= GOAL,
    )
    result(
        f"search query p99, {LARGE // 1000}k vs {SMALL // 1000}k docs",
        f"{large.p99_ms:.2f} ms",
        f"{small.p99_ms:.2f} ms",
        large.p99_ms / small.p99_ms,
    )
    result("search indexing rate (production write path)", f"{rate:.0f} docs/s")
    if with_segmentation:
        seg = segmentation(scratch)
        ngram, unigram, jieba = seg["n-gram"], seg["unigram"], seg["rjieba"]
        for other in (unigram, jieba):
            result(
                f"search Chinese recall / precision, n-gram vs {other.name}",
                f"{ngram.recall:.3f} / {ngram.precision:.3f}",
                f"{other.recall:.3f} / {other.precision:.3f}",
            )
            result(
                f"search Chinese query p50 ({SEG_DOCS // 1000}k docs), n-gram vs {other.name}",
                f"{ngram.query_p50_ms:.3f} ms",
                f"{other.query_p50_ms:.3f} ms",
                ngram.query_p50_ms / other.query_p50_ms,
            )
            result(
                f"search segmentation indexing, n-gram vs {other.name}",
                f"{ngram.docs_per_s:.0f} docs/s",
                f"{other.docs_per_s:.0f} docs/s",
                ngram.docs_per_s / other.docs_per_s,
            )
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit code 1 when the latency goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument(
        "--no-segmentation",
        action="store_true",
        help="skip the n-gram / unigram / rjieba comparison",
    )
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        ratio = asyncio.run(run(scratch, with_segmentation=not args.no_segmentation))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
