"""Benchmark of the ranking service: the bounded top-K, and a whole job run over 100,000
articles.

Run ``python -m bench.ranking`` (under a minute on the 2-core reference machine). A
deterministic set of ``ARTICLES`` published articles is built: last updates spread evenly
over the job's 7-day window, ids in update order (newer is higher), and likes skewed as on
a real site (``UNLIKED`` of the articles have none, the others a Pareto tail). Two measures:

1. **Top-K: the bounded heap vs a full sort.** The ``(score, id, article)`` triples of every
   article, in the order the job sees them (newest first), go through
   :func:`services.ranking.scoring.top_k` (the :class:`~services.ranking.scoring.TopK` the job
   offers to, and its :meth:`~services.ranking.scoring.TopK.best`) and through a full
   ``sorted`` on the same key cut to ``K``, in ``TOPK_ROUNDS`` alternating rounds; the
   medians are compared (goal: heap / sort below 1), and the memory each allocates
   (``tracemalloc`` peak, in separate passes so that tracing does not skew the times).
   ``heapq.nlargest`` and the worst case of the heap (scores ascending, so every offer
   replaces the root; the best case of the sort) are informative rows. Every variant must
   return the same ranking.
2. **The ranking job over ``ARTICLES`` articles.** The real
   :class:`services.ranking.job.RankingJob` with the real scoring and the real
   :class:`~services.ranking.store.RedisRankingStore`; its two ports, article ``ListPub``
   and interactive ``GetByIds``, are in-memory stand-ins that answer pages of 100 at once
   (so this is the job's own cost, without the 2,000 calls to the peers a production run
   also waits for). The store's keys are fixed (``webook:ranking:*``), so Redis is a
   throwaway ``redis-server`` on a free port in a temporary directory, not a shared one.
   The baseline is the same pipeline with a full sort instead of the heap (written here:
   the same pages, likes, scores and ranked articles, all kept and sorted, the same store):
   it tells what the heap changes in a whole run. Wall time is the median of ``JOB_ROUNDS``
   alternating rounds; peak memory (``tracemalloc``, separate passes) is where the heap's
   ``O(k + batch)`` against ``O(n)`` shows. A third informative row is the floor of any
   implementation over these ports: the same paging and scoring with nothing kept and
   nothing stored. Each run must rank the same articles, and Redis must hold the result.

The exit code is 1 if the top-K goal is missed, 2 if a check fails. On a shared machine,
compare the ratios (both sides measured alike) rather than the absolute figures.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import heapq
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Final, TypeVar

from bench._databases import CheckFailed
from bench._report import result
from devstack.infra import ManagedProcess, free_port, redis_process
from kit.redisx import create_redis
from services.ranking.domain import RankedArticle, Ranking
from services.ranking.job import MS_PER_DAY, JobConfig, RankingJob
from services.ranking.memory import LocalRanking
from services.ranking.scoring import hot_score, top_k
from services.ranking.store import RedisRankingStore
from webook.article.v1 import article_pb2

ARTICLES: Final = 100_000
K: Final = 100
UNLIKED: Final = 0.4
PARETO_ALPHA: Final = 1.1
TOPK_ROUNDS: Final = 9
JOB_ROUNDS: Final = 5
TOPK_GOAL: Final = 1.0
SEED: Final = 20_261_208
NOW_MS: Final = 1_796_000_000_000
JOB: Final = JobConfig()
AUTHORS: Final = 1_000
KIB: Final = 1024
MIB: Final = 1024 * 1024

Triple = tuple[float, int, RankedArticle]
Best = list[tuple[float, RankedArticle]]
T = TypeVar("T")
_KEY = itemgetter(0, 1)


# Data ---------------------------------------------------------------------------------


def build_articles() -> tuple[list[article_pb2.Article], dict[int, int]]:
    """``ARTICLES`` published articles newest first, and their likes by id (see the module)."""
    rng = random.Random(SEED)
    window_ms = JOB.window_days * MS_PER_DAY
    utimes = sorted(NOW_MS - 1 - rng.randrange(window_ms) for _ in range(ARTICLES))
    articles: list[article_pb2.Article] = []
    likes: dict[int, int] = {}
    for article_id, utime in enumerate(utimes, start=1):
        author = article_id % AUTHORS + 1
        articles.append(
            article_pb2.Article(
                id=article_id,
                title=f"Article {article_id}: notes on caches and queues",
                abstract=f"What article {article_id} found about read paths under load.",
                author=article_pb2.Author(id=author, name=f"author {author}"),
                status=article_pb2.ARTICLE_STATUS_PUBLISHED,
                ctime_ms=utime,
                utime_ms=utime,
            )
        )
        if rng.random() >= UNLIKED:
            likes[article_id] = int(rng.paretovariate(PARETO_ALPHA))
    articles.reverse()
    return articles, likes


def ranked(article: article_pb2.Article, likes: int, score: float) -> RankedArticle:
    """The ranked form of ``article``, field for field as the job builds it."""
    return RankedArticle(
        id=article.id,
        title=article.title,
        abstract=article.abstract,
        author_id=article.author.id,
        author_name=article.author.name,
        like_cnt=likes,
        utime_ms=article.utime_ms,
        score=score,
    )


def scored_triples(articles: Sequence[article_pb2.Article], likes: dict[int, int]) -> list[Triple]:
    """``(score, id, ranked article)`` of every article, in ``articles``' order."""
    triples: list[Triple] = []
    for article in articles:
        liked = likes.get(article.id, 0)
        score = hot_score(liked, NOW_MS - article.utime_ms)
        triples.append((score, article.id, ranked(article, liked, score)))
    return triples


# 1. Top-K ----------------------------------------------------------------------------


def by_heap(triples: Sequence[Triple]) -> Best:
    """The production top-K."""
    return top_k(triples, K)


def by_sort(triples: Sequence[Triple]) -> Best:
    """Every triple sorted, the first ``K`` kept."""
    return [(score, item) for score, _, item in sorted(triples, key=_KEY, reverse=True)[:K]]


def by_nlargest(triples: Sequence[Triple]) -> Best:
    """The standard library's bounded selection."""
    return [(score, item) for score, _, item in heapq.nlargest(K, triples, key=_KEY)]


def timed(run: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``run`` took (after a collection, so earlier garbage is not billed), and
    what it returned."""
    gc.collect()
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def peak_bytes(run: Callable[[], object]) -> int:
    """Bytes ``run`` allocated at its peak beyond what was allocated before (``tracemalloc``)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def alternate(sides: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each side per round; the order of the sides rotates every round."""
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            took, _ = timed(sides[name])
            seconds[name].append(took)
    return seconds


def measure_top_k(triples: list[Triple]) -> bool:
    """Measure 1 (see the module); prints its rows; True if the goal is met."""
    worst = sorted(triples, key=_KEY)
    expected = by_sort(triples)
    for name, check in (("heap", by_heap), ("nlargest", by_nlargest)):
        if check(triples) != expected or check(worst) != expected:
            raise CheckFailed(f"top-K by {name} differs from the full sort")
    seconds = alternate(
        {
            "heap": lambda: by_heap(triples),
            "sort": lambda: by_sort(triples),
            "nlargest": lambda: by_nlargest(triples),
            "heap, ascending": lambda: by_heap(worst),
            "sort, ascending": lambda: by_sort(worst),
        },
        TOPK_ROUNDS,
    )
    median = {name: statistics.median(values) for name, values in seconds.items()}
    memory = {
        "heap": peak_bytes(lambda: by_heap(triples)),
        "sort": peak_bytes(lambda: by_sort(triples)),
        "nlargest": peak_bytes(lambda: by_nlargest(triples)),
    }
    for name, value in median.items():
        extra = f", peak {memory[name] / KIB:8.1f} KiB allocated" if name in memory else ""
        print(f"top-{K} of {ARTICLES:,} by {name:<16} {value * 1000:7.1f} ms (median){extra}")
    ratio = median["heap"] / median["sort"]
    met = ratio < TOPK_GOAL
    result(
        f"ranking top-{K} of {ARTICLES // 1000}k, bounded heap vs full sort (time)",
        f"{median['heap'] * 1000:.1f} ms",
        f"{median['sort'] * 1000:.1f} ms",
        ratio,
        f"< {TOPK_GOAL:g}",
        met,
    )
    result(
        f"ranking top-{K} of {ARTICLES // 1000}k, bounded heap vs full sort (peak memory)",
        f"{memory['heap'] / KIB:.0f} KiB",
        f"{memory['sort'] / KIB:.0f} KiB",
        memory["heap"] / memory["sort"],
    )
    result(
        f"ranking top-{K} of {ARTICLES // 1000}k, bounded heap vs heapq.nlargest (time)",
        f"{median['heap'] * 1000:.1f} ms",
        f"{median['nlargest'] * 1000:.1f} ms",
        median["heap"] / median["nlargest"],
    )
    result(
        f"ranking top-{K} of {ARTICLES // 1000}k, scores ascending (heap's worst, sort's best)",
        f"{median['heap, ascending'] * 1000:.1f} ms",
        f"{median['sort, ascending'] * 1000:.1f} ms",
        median["heap, ascending"] / median["sort, ascending"],
    )
    return met


# 2. The job --------------------------------------------------------------------------


class MemoryArticles:
    """Article ``ListPub`` from memory: published articles by update-time window, newest
    first, by offset."""

    def __init__(self, newest_first: Sequence[article_pb2.Article]) -> None:
        self._articles = newest_first
        # Negated update times, ascending, for bisecting the window.
        self._keys = [-article.utime_ms for article in newest_first]
        self.calls = 0

    async def page(
        self, start_ms: int, end_ms: int, offset: int, limit: int
    ) -> Sequence[article_pb2.Article]:
        """Articles updated in ``[start_ms, end_ms)``, newest first."""
        self.calls += 1
        first = bisect.bisect_right(self._keys, -end_ms)
        last = bisect.bisect_right(self._keys, -start_ms)
        begin = first + offset
        return self._articles[begin : min(begin + limit, last)]


class MemoryLikes:
    """Interactive ``GetByIds`` from memory: like counts by article id."""

    def __init__(self, likes: dict[int, int]) -> None:
        self._likes = likes
        self.calls = 0

    async def likes(self, article_ids: Sequence[int]) -> dict[int, int]:
        """Likes of each of ``article_ids`` that has any."""
        self.calls += 1
        return {i: self._likes[i] for i in article_ids if i in self._likes}


class Pipelines:
    """The job and its baselines over the same ports and store."""

    def __init__(
        self, articles: MemoryArticles, likes: MemoryLikes, store: RedisRankingStore
    ) -> None:
        self.articles = articles
        self.likes = likes
        self.store = store
        self.local = LocalRanking(ttl_ms=lambda: JOB.ttl_ms, clock=lambda: NOW_MS)
        self.job = RankingJob(articles, likes, store, self.local, lambda: JOB, clock=lambda: NOW_MS)
        self._token = 0

    def token(self) -> int:
        """A fencing token above every one used so far."""
        self._token += 1
        return self._token

    @property
    def last_token(self) -> int:
        """The last fencing token handed out."""
        return self._token

    async def run_job(self) -> Ranking:
        """One production run; checks it scored every article."""
        run = await self.job.run(self.token())
        if run.scored != ARTICLES:
            raise CheckFailed(f"the job scored {run.scored} articles, not {ARTICLES}")
        return run.ranking

    async def run_sort(self) -> Ranking:
        """The same run keeping every ranked article and sorting them all at the end."""
        token = self.token()
        await self.store.accept_token(token)
        scored: list[Triple] = []
        async for batch, counts in self._pages():
            for article in batch:
                liked = counts.get(article.id, 0)
                score = hot_score(liked, NOW_MS - article.utime_ms)
                scored.append((score, article.id, ranked(article, liked, score)))
        scored.sort(key=_KEY, reverse=True)
        ranking = Ranking(tuple(item for _, _, item in scored[:K]), computed_at_ms=NOW_MS)
        await self.store.save(ranking, token=token, ttl_ms=JOB.ttl_ms)
        return ranking

    async def run_floor(self) -> Ranking:
        """The paging and the scoring alone: nothing kept, nothing stored."""
        count, total = 0, 0.0
        async for batch, counts in self._pages():
            for article in batch:
                total += hot_score(counts.get(article.id, 0), NOW_MS - article.utime_ms)
                count += 1
        if count != ARTICLES or total <= 0:
            raise CheckFailed(f"the floor scored {count} articles (sum {total})")
        return Ranking()

    async def _pages(
        self,
    ) -> AsyncIterator[tuple[Sequence[article_pb2.Article], dict[int, int]]]:
        """Each page of the window with its likes, read as the job reads them."""
        start = NOW_MS - JOB.window_days * MS_PER_DAY
        offset = 0
        while True:
            batch = await self.articles.page(start, NOW_MS, offset, JOB.batch_size)
            if not batch:
                return
            yield batch, await self.likes.likes([a.id for a in batch])
            offset += len(batch)
            if len(batch) < JOB.batch_size:
                return


async def async_peak_bytes(run: Callable[[], Awaitable[object]]) -> int:
    """:func:`peak_bytes` of an awaited call."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


async def measure_job(
    articles: list[article_pb2.Article], likes: dict[int, int], redis_url: str
) -> None:
    """Measure 2 (see the module); prints its rows."""
    redis = create_redis(redis_url)
    try:
        pipelines = Pipelines(
            MemoryArticles(articles), MemoryLikes(likes), RedisRankingStore(redis)
        )
        expected = await pipelines.run_sort()
        if await pipelines.run_job() != expected:
            raise CheckFailed("the job's ranking differs from the full sort's")
        if await pipelines.store.load() != expected:
            raise CheckFailed("Redis does not hold the job's ranking")
        if len(expected.articles) != K:
            raise CheckFailed(f"{len(expected.articles)} articles ranked, not {K}")
        sides: dict[str, Callable[[], Awaitable[Ranking]]] = {
            "job": pipelines.run_job,
            "full sort": pipelines.run_sort,
            "floor": pipelines.run_floor,
        }
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for round_ in range(JOB_ROUNDS):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                gc.collect()
                started = time.perf_counter()
                ranking = await sides[name]()
                seconds[name].append(time.perf_counter() - started)
                if name != "floor" and ranking != expected:
                    raise CheckFailed(f"the {name} ranked other articles in round {round_ + 1}")
        median = {name: statistics.median(values) for name, values in seconds.items()}
        memory = {
            "job": await async_peak_bytes(pipelines.run_job),
            "full sort": await async_peak_bytes(pipelines.run_sort),
        }
        if await pipelines.store.highest_token() != pipelines.last_token:
            raise CheckFailed("the store did not record the last fencing token")
    finally:
        await redis.aclose(close_connection_pool=True)
    for name, value in median.items():
        extra = f", peak {memory[name] / MIB:6.2f} MiB allocated" if name in memory else ""
        print(
            f"ranking run over {ARTICLES:,} articles, {name:<9} {value:6.3f} s "
            f"({ARTICLES / value:8,.0f} articles/s; median of {JOB_ROUNDS}){extra}"
        )
    print(
        f"  ({pipelines.articles.calls} ListPub and {pipelines.likes.calls} GetByIds answered "
        "from memory in all)"
    )
    job, sort, floor = median["job"], median["full sort"], median["floor"]
    result(
        f"ranking job over {ARTICLES // 1000}k articles vs same pipeline with a full sort",
        f"{job:.2f} s ({ARTICLES / job:,.0f} articles/s)",
        f"{sort:.2f} s ({ARTICLES / sort:,.0f} articles/s)",
        job / sort,
    )
    result(
        f"ranking job over {ARTICLES // 1000}k articles vs full sort (peak memory)",
        f"{memory['job'] / MIB:.2f} MiB",
        f"{memory['full sort'] / MIB:.2f} MiB",
        memory["job"] / memory["full sort"],
    )
    result(
        f"ranking job over {ARTICLES // 1000}k articles vs paging and scoring alone",
        f"{job:.2f} s",
        f"{floor:.2f} s",
        job / floor,
    )


def main() -> int:
    """Build the data, measure the top-K, start Redis, measure the job, stop Redis."""
    started = time.perf_counter()
    articles, likes = build_articles()
    triples = scored_triples(articles, likes)
    print(
        f"{ARTICLES:,} articles over {JOB.window_days} days, {len(likes):,} liked "
        f"(max {max(likes.values()):,} likes), built in {time.perf_counter() - started:.1f} s"
    )
    try:
        met = measure_top_k(triples)
        del triples
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            redis: ManagedProcess = redis_process(port, Path(tmp))
            with redis:
                asyncio.run(measure_job(articles, likes, f"redis://127.0.0.1:{port}/0"))
    except CheckFailed as exc:
        sys.stderr.write(f"check failed: {exc}\n")
        return 2
    print(f"bench.ranking took {time.perf_counter() - started:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
