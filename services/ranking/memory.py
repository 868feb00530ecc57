"""This replica's copy of the ranking, which every read is answered from.

The copy is replaced by the job when it runs here, and by :class:`RankingRefresher`, a
background task that reads Redis every ``interval_s`` (so a replica that did not run the job
serves the new ranking within one interval).

Expiry and stale serving (the seed's fault-tolerant local cache): a copy is fresh for
``ttl_ms`` after it was computed. Past that, the read depends on the last refresh:

- Redis answered (so the shared ranking lapsed too: the job stopped running): the read is
  empty, as the original project's; ``webook_ranking_age_seconds`` shows the lapse;
- Redis could not be read: the expired copy is served anyway, flagged stale and counted in
  ``webook_ranking_stale_serves_total`` — an outage of Redis must not empty the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kit.cache.store import REDIS_FAILURES
from services.ranking.domain import EMPTY, Ranking
from services.ranking.metrics import RANKING_AGE, STALE_SERVES
from services.ranking.store import RedisRankingStore

logger = logging.getLogger(__name__)


def wall_ms() -> int:
    """The wall clock in ms (rankings carry wall-clock instants shared across replicas)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Served:
    """What a read answers: the ranking and whether it is past its expiry."""

    ranking: Ranking
    stale: bool = False


class LocalRanking:
    """The ranking in memory, with its expiry policy (see the module)."""

    def __init__(self, *, ttl_ms: Callable[[], int], clock: Callable[[], int] = wall_ms) -> None:
        self._ttl_ms = ttl_ms
        self._clock = clock
        self._ranking: Ranking = EMPTY
        self.redis_ok = True
        RANKING_AGE.set_function(self.age_seconds)

    def age_seconds(self) -> float:
        """Seconds since the copy was computed; -1 without one."""
        if not self._ranking.computed_at_ms:
            return -1.0
        return max(self._clock() - self._ranking.computed_at_ms, 0) / 1000

    def expired(self) -> bool:
        """Whether the copy (if any) is past ``computed_at + ttl``."""
        computed = self._ranking.computed_at_ms
        return bool(computed) and self._clock() >= computed + self._ttl_ms()

    def replace(self, ranking: Ranking) -> None:
        """Keep ``ranking`` unless the copy is newer (a refresh racing the job's own write)."""
        if ranking.computed_at_ms >= self._ranking.computed_at_ms:
            self._ranking = ranking

    def read(self) -> Served:
        """The ranking to serve now (see the module for past its expiry)."""
        if not self.expired():
            return Served(self._ranking)
        if self.redis_ok:
            return Served(EMPTY)
        STALE_SERVES.inc()
        return Served(self._ranking, stale=True)


class RankingRefresher:
    """Reads the shared ranking from Redis every ``interval_s`` into a :class:`LocalRanking`
    (a runner component: started before serving, so the first read is warm when Redis is)."""

    def __init__(
        self, store: RedisRankingStore, local: LocalRanking, *, interval_s: Callable[[], float]
    ) -> None:
        self._store = store
        self._local = local
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """One read of Redis; a failure marks Redis down (stale serving), never raises."""
        try:
            ranking = await self._store.load()
        except REDIS_FAILURES as exc:
            if self._local.redis_ok:
                logger.warning("ranking refresh failed: serving the local copy", exc_info=exc)
            self._local.redis_ok = False
            return
        self._local.redis_ok = True
        if ranking is not None:
            self._local.replace(ranking)

    async def start(self) -> None:
        """Refresh once (bounded by the Redis client's timeout), then every interval."""
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="ranking-refresher")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s())
            await self.refresh()

    async def stop(self) -> None:
        """End the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
