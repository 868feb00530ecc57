"""The ranking job: score the published articles of the last days, keep the top K, store it.

A run (:meth:`RankingJob.run`), for one fencing token:

1. records the token in Redis, refusing it if a higher one was accepted
   (:class:`~services.ranking.errors.StaleFencingToken`);
2. pages through the articles published (last updated) in ``[now - window_days, now)`` with
   article ``ListPub``, ``batch_size`` at a time, newest first, and asks interactive
   ``GetByIds`` for the likes of each batch;
3. scores each article (:func:`~services.ranking.scoring.hot_score`) and offers it to a
   bounded heap of ``top_k`` (:class:`~services.ranking.scoring.TopK`): O(n log k) time and
   O(k + batch) memory, whatever the number of articles;
4. writes the result to Redis with an expiry, again unless a higher token was accepted
   meanwhile, then into this replica's memory (other replicas read it from Redis).

A peer or Redis failure fails the whole run (:class:`~services.ranking.errors.RankingJobFailed`)
and leaves the ranking in force unchanged. Paging is by offset over a window whose end is
fixed at the start of the run; an article republished during the run leaves the window and
may shift the next page by one (it is missed by this run, never counted twice).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from kit.cache.store import REDIS_FAILURES
from services.ranking.domain import RankedArticle, Ranking
from services.ranking.errors import (
    RankingInvalidArgument,
    RankingJobFailed,
    Reason,
    StaleFencingToken,
)
from services.ranking.memory import LocalRanking, wall_ms
from services.ranking.metrics import FENCING_REJECTIONS, JOB_DURATION
from services.ranking.scoring import TopK, hot_score
from services.ranking.store import RedisRankingStore
from webook.article.v1 import article_pb2

logger = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000

T = TypeVar("T")


# Tokens at or above this lose precision in Redis's Lua numbers (doubles).
MAX_FENCING_TOKEN: Final = 2**53


class ArticleSource(Protocol):
    """Published articles by update-time window (article ``ListPub``)."""

    async def page(
        self, start_ms: int, end_ms: int, offset: int, limit: int
    ) -> Sequence[article_pb2.Article]:
        """Articles updated in ``[start_ms, end_ms)``, newest first."""
        ...


class LikeSource(Protocol):
    """Like counts (interactive ``GetByIds``)."""

    async def likes(self, article_ids: Sequence[int]) -> dict[int, int]:
        """Likes of each article (absent: 0)."""
        ...


@dataclass(frozen=True, slots=True)
class JobConfig:
    """What one run reads and keeps."""

    window_days: int = 7
    batch_size: int = 100
    top_k: int = 100
    ttl_ms: int = 15 * 60 * 1000


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did."""

    scored: int
    ranking: Ranking


class RankingJob:
    """Computes and stores the ranking (see the module)."""

    def __init__(
        self,
        articles: ArticleSource,
        likes: LikeSource,
        store: RedisRankingStore,
        local: LocalRanking,
        config: Callable[[], JobConfig],
        *,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._articles = articles
        self._likes = likes
        self._store = store
        self._local = local
        self._config = config
        self._clock = clock

    async def run(self, fencing_token: int) -> RunResult:
        """One run under ``fencing_token`` (1 to 2**53 - 1); see the module."""
        # Redis compares tokens in Lua, as doubles: exact only below 2**53 (a job's version
        # is far below).
        if not 0 < fencing_token < MAX_FENCING_TOKEN:
            raise RankingInvalidArgument(
                Reason.INVALID_FENCING_TOKEN,
                f"fencing_token must be between 1 and {MAX_FENCING_TOKEN - 1}",
                metadata={"field": "fencing_token"},
            )
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await self._run(fencing_token, self._config())
            outcome = "ok"
            return result
        except StaleFencingToken:
            outcome = "stale_token"
            FENCING_REJECTIONS.inc()
            raise
        finally:
            JOB_DURATION.labels(outcome).observe(time.perf_counter() - started)

    async def _run(self, token: int, config: JobConfig) -> RunResult:
        await self._redis(self._store.accept_token(token), "recording the fencing token")
        now = self._clock()
        start = now - config.window_days * MS_PER_DAY
        keeper: TopK[RankedArticle] = TopK(config.top_k)
        offset = 0
        while True:
            batch = await self._articles.page(start, now, offset, config.batch_size)
            if not batch:
                break
            likes = await self._likes.likes([a.id for a in batch])
            for article in batch:
                liked = likes.get(article.id, 0)
                score = hot_score(liked, now - article.utime_ms)
                keeper.offer_built(
                    score, article.id, functools.partial(_ranked, article, liked, score)
                )
            offset += len(batch)
            if len(batch) < config.batch_size:
                break
        ranking = Ranking(tuple(item for _, item in keeper.best()), computed_at_ms=now)
        await self._redis(
            self._store.save(ranking, token=token, ttl_ms=config.ttl_ms), "storing the ranking"
        )
        self._local.replace(ranking)
        logger.info(
            "ranking computed",
            extra={"fencing_token": token, "scored": keeper.offered, "ranked": len(keeper)},
        )
        return RunResult(scored=keeper.offered, ranking=ranking)

    @staticmethod
    async def _redis(call: Awaitable[T], what: str) -> T:
        try:
            return await call
        except REDIS_FAILURES as exc:
            raise RankingJobFailed(Reason.JOB_FAILED, f"{what} in Redis failed: {exc!r}") from exc


def _ranked(article: article_pb2.Article, likes: int, score: float) -> RankedArticle:
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
