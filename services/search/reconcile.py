"""The reconciliation sweep: the index repairs what its event stream failed to bring.

Events keep an index in sync, but an index can still miss changes: a replica restored from
an old volume, a consumer group reset past unread events, a bug. A missed withdrawal is the
worst of them (the article stays searchable), and nothing else would ever notice. So every
``reconcile_interval_seconds`` (jittered, so that replicas do not sweep the article service
at the same moment; 0 disables it) :class:`Reconciler` compares the index with the article
service and repairs the differences:

- it notes the sweep's start time ``T`` and the index's live articles and their versions;
- it lists every article published (last updated) before ``T`` from the article service
  (:class:`~services.search.peers.ArticleServicePublished`, ``ListPub``);
- a listed article the index does not hold live is **missing**, one it holds at an older
  version than the source's update time is **stale**: both are offered as an upsert at the
  source's update time;
- an article the index holds live but the source no longer lists was withdrawn (or
  deleted) without the index learning it: it is **removed** at version ``T``.

Every repair goes through :meth:`SearchService.apply
<services.search.service.SearchService.apply>` (source ``reconcile``), the versioned writer
every event goes through, so a concurrent newer event always wins: an article edited or
withdrawn after ``T`` carries a newer version than anything the sweep offers, and a repair
that lost that race is counted ``superseded`` (``webook_search_sync_changes_total``), not a
repair. An article updated after ``T`` is not listed; if its event has not arrived yet it
may be hidden by the removal at ``T`` until that event (newer) arrives, as with the
reindexer.

Only differences are kept and offered, so a sweep over an index in sync writes nothing and
costs one ``ListPub`` pass and one read of the index's ids. Nothing is offered until the
whole listing was read: a source that fails mid-way leaves the index untouched (the sweep
is counted ``error`` and runs again at the next interval), since a partial listing would
make every unlisted article look withdrawn. The sweep covers articles only: users are never
removed, and a user's missed change is repaired by the next ``UserChanged`` or a reindex.

Metrics (:mod:`services.search.metrics`): ``webook_search_reconcile_sweeps_total{result}``,
``webook_search_reconcile_repairs_total{kind}`` and
``webook_search_reconcile_last_success_timestamp_seconds`` (an alert fires when no sweep
succeeded for several intervals); a span ``search.reconcile`` per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from opentelemetry import trace
from pydantic import BaseModel, Field

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.search import metrics
from services.search.domain import ArticleDoc, Change, DocKey, DocType, Removal, Upsert
from services.search.peers import ArticleServicePublished
from services.search.service import Clock, PublishedArticles, SearchIndex, SearchService, now_ms

logger = logging.getLogger(__name__)
TRACER_NAME: Final = __name__
SOURCE: Final = "reconcile"
RepairKind = Literal["missing", "stale", "removed"]


class ReconcileSettings(BaseModel):
    """The sweep's settings (a mixin of the service's settings class;
    ``WEBOOK_SEARCH_RECONCILE_INTERVAL_SECONDS``, ...)."""

    # Seconds between sweeps of the index against the article service (0: no sweep). The
    # first sweep comes one interval after the start, after an empty index's rebuild.
    reconcile_interval_seconds: float = Field(default=900.0, ge=0)
    # Each wait is the interval times a random factor in [1 - jitter, 1 + jitter].
    reconcile_jitter_ratio: float = Field(default=0.2, ge=0, lt=1)
    # Page size of the sweep's ListPub calls (at most 100) and each call's timeout.
    reconcile_article_page: int = Field(default=100, ge=1, le=100)
    reconcile_call_timeout_seconds: float = Field(default=10.0, gt=0)
    # Repairs offered to the index per call of the writer.
    reconcile_chunk: int = Field(default=500, ge=1, le=100_000)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep found and repaired (repairs: changes the index took)."""

    listed: int
    indexed: int
    found: dict[RepairKind, int]
    repaired: dict[RepairKind, int]


class Reconciler:
    """Sweeps the index against the article service on a timer (see the module docstring).

    :meth:`start` the timer inside the running loop (nothing when the interval is 0);
    :meth:`stop` ends it, cancelling a sweep in progress (its applied repairs stay: each
    one is right on its own). :meth:`sweep` runs one sweep now.
    """

    def __init__(
        self,
        service: SearchService,
        index: SearchIndex,
        articles: PublishedArticles,
        *,
        interval_s: float,
        jitter_ratio: float = 0.2,
        chunk: int = 500,
        clock: Clock = now_ms,
        random_factor: Callable[[float, float], float] = random.uniform,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._service = service
        self._index = index
        self._articles = articles
        self._interval = interval_s
        self._jitter = jitter_ratio
        self._chunk = chunk
        self._clock = clock
        self._random = random_factor
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether :meth:`start` runs sweeps (the interval is not 0)."""
        return self._interval > 0

    def next_wait(self) -> float:
        """Seconds until the next sweep: the interval, jittered."""
        return self._interval * self._random(1 - self._jitter, 1 + self._jitter)

    def start(self) -> None:
        """Sweep every interval from now on (the first one interval from now)."""
        if not self.enabled:
            logger.info("index reconciliation disabled")
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="search-reconcile")

    async def stop(self) -> None:
        """Stop sweeping; a sweep in progress is cancelled."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.next_wait())
            # A failed sweep was counted and logged by sweep(); whatever failed it, the next
            # one comes at the next interval.
            with contextlib.suppress(Exception):
                await self.sweep()

    async def sweep(self) -> SweepReport:
        """One sweep now; returns what it found and repaired.

        Raises :class:`~services.search.errors.SearchUnavailable` when the article service
        cannot be listed (``SEARCH_SOURCE_UNAVAILABLE``: nothing was changed) or the index
        cannot commit the repairs.
        """
        with self._tracer.start_as_current_span("search.reconcile") as span:
            try:
                report = await self._sweep()
            except AppError as exc:
                metrics.RECONCILE_SWEEPS.labels("error").inc()
                span.set_status(trace.StatusCode.ERROR, exc.message)
                logger.warning(
                    "index reconciliation failed; it runs again at the next interval",
                    extra={"reason": exc.reason, "error": exc.message},
                )
                raise
            except Exception:
                metrics.RECONCILE_SWEEPS.labels("error").inc()
                logger.exception("index reconciliation failed")
                raise
            for kind, count in report.found.items():
                span.set_attribute(f"search.reconcile.{kind}", count)
            span.set_attribute("search.reconcile.listed", report.listed)
        metrics.RECONCILE_SWEEPS.labels("ok").inc()
        metrics.RECONCILE_LAST_SUCCESS.set(time.time())
        for kind, count in report.repaired.items():
            metrics.RECONCILE_REPAIRS.labels(kind).inc(count)
        log = logger.info if any(report.repaired.values()) else logger.debug
        log(
            "index reconciled",
            extra={
                "listed": report.listed,
                "indexed": report.indexed,
                **{f"repaired_{kind}": count for kind, count in report.repaired.items()},
            },
        )
        return report

    async def _sweep(self) -> SweepReport:
        started = self._clock()
        indexed = await self._index.live_versions(DocType.ARTICLE)
        unlisted = set(indexed)
        repairs: dict[RepairKind, list[Change]] = {"missing": [], "stale": [], "removed": []}
        listed = 0
        async for article in self._articles.published(before_ms=started + 1):
            listed += 1
            unlisted.discard(article.id)
            kind = _difference(article, indexed.get(article.id))
            if kind is not None:
                repairs[kind].append(Upsert(article, article.utime_ms))
        repairs["removed"] = [
            Removal(DocKey(DocType.ARTICLE, article_id), started) for article_id in sorted(unlisted)
        ]
        repaired: dict[RepairKind, int] = {}
        for kind, changes in repairs.items():
            repaired[kind] = 0
            for offset in range(0, len(changes), self._chunk):
                batch = changes[offset : offset + self._chunk]
                repaired[kind] += await self._service.apply(batch, source=SOURCE)
        return SweepReport(
            listed=listed,
            indexed=len(indexed),
            found={kind: len(changes) for kind, changes in repairs.items()},
            repaired=repaired,
        )


def _difference(article: ArticleDoc, indexed_version: int | None) -> RepairKind | None:
    """How the index differs from the source's ``article`` (None: it does not)."""
    if indexed_version is None:
        return "missing"
    if indexed_version < article.utime_ms:
        return "stale"
    return None


def build_reconciler(
    settings: ReconcileSettings,
    service: SearchService,
    index: SearchIndex,
    clients: ServiceClients,
) -> Reconciler:
    """A reconciler reading the article service through ``clients`` (started with the
    process once it serves; a no-op when ``reconcile_interval_seconds`` is 0)."""
    return Reconciler(
        service,
        index,
        ArticleServicePublished(
            clients,
            page_size=settings.reconcile_article_page,
            timeout_s=settings.reconcile_call_timeout_seconds,
        ),
        interval_s=settings.reconcile_interval_seconds,
        jitter_ratio=settings.reconcile_jitter_ratio,
        chunk=settings.reconcile_chunk,
    )
