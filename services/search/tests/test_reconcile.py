"""The reconciliation sweep over a fake article service (real gRPC, the real paging rules)
and a real index in a temporary directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from kit.grpcx.client import ServiceClients
from services.search.domain import DocKey, DocType, Removal, Upsert, Version
from services.search.errors import Reason, SearchUnavailable
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, article_from_proto
from services.search.reconcile import (
    Reconciler,
    ReconcileSettings,
    build_reconciler,
)
from services.search.service import BatchedIndexWriter, SearchService
from services.search.tests.sources import Sources, serving_sources

NOW = 1_800_000_000_000
# The sweeps' start time: every article below was updated before it.
START = NOW + 1_000


@dataclass
class Setup:
    """A service on a fresh index, the fake article service and clients reaching it."""

    svc: SearchService
    index: TantivySearchIndex
    sources: Sources
    clients: ServiceClients
    provider: TracerProvider
    spans: InMemorySpanExporter

    def reconciler(self, *, page: int = 100, interval_s: float = 0) -> Reconciler:
        """A reconciler over the fake with pages of ``page`` articles."""
        return Reconciler(
            self.svc,
            self.index,
            ArticleServicePublished(self.clients, page_size=page, timeout_s=5),
            interval_s=interval_s,
            chunk=3,
            clock=lambda: START,
            random_factor=lambda low, high: 1.0,
            tracer_provider=self.provider,
        )

    def publish(self, article_id: int, title: str, utime_ms: int) -> None:
        """Publish at the source only (the index misses the event)."""
        self.sources.articles.publish(article_id, title, f"<p>{title} 正文</p>", utime_ms)

    async def index_as_source(self, *article_ids: int, version: int | None = None) -> None:
        """Index the source's articles as their events would have (at ``version`` if
        given, else their update time)."""
        changes = []
        for article_id in article_ids:
            doc = article_from_proto(self.sources.articles.articles[article_id])
            assert doc is not None
            changes.append(Upsert(doc, version or doc.utime_ms))
        await self.svc.apply(changes, source="kafka")

    async def titles(self) -> dict[int, str]:
        """Article id → title of every article a search for the common word finds."""
        page = await self.svc.search("限流", int(DocType.ARTICLE), 0, 50)
        return {hit.key.id: hit.title for hit in page.hits}


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of the test's own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def setup(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[Setup]:
    """See :class:`Setup`."""
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.02)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: START)
    async with serving_sources() as sources:
        clients = ServiceClients(registry=None, peers=sources.peers)
        try:
            yield Setup(svc, index, sources, clients, *spans)
        finally:
            await clients.close()
            await writer.stop()
            await index.close()


def sample(name: str, **labels: str) -> float:
    """The current value of a metric sample (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_missed_publish_is_added(setup: Setup) -> None:
    for article_id in range(1, 8):
        setup.publish(article_id, f"限流 第{article_id}篇", NOW - article_id)
    await setup.index_as_source(1, 2, 3, 5, 6)
    before = sample("webook_search_reconcile_repairs_total", kind="missing")
    report = await setup.reconciler(page=2).sweep()
    assert report.found == {"missing": 2, "stale": 0, "removed": 0}
    assert report.repaired == {"missing": 2, "stale": 0, "removed": 0}
    assert (report.listed, report.indexed) == (7, 5)
    assert set(await setup.titles()) == set(range(1, 8))
    assert sample("webook_search_reconcile_repairs_total", kind="missing") == before + 2
    # A second sweep finds the index in sync and writes nothing.
    again = await setup.reconciler(page=2).sweep()
    assert again.found == {"missing": 0, "stale": 0, "removed": 0}


async def test_a_missed_withdrawal_is_removed(setup: Setup) -> None:
    for article_id in (1, 2, 3):
        setup.publish(article_id, f"限流 第{article_id}篇", NOW - article_id)
    await setup.index_as_source(1, 2, 3)
    setup.sources.articles.withdraw(2)  # its ArticleWithdrawn never reached the index
    report = await setup.reconciler().sweep()
    assert report.repaired == {"missing": 0, "stale": 0, "removed": 1}
    assert set(await setup.titles()) == {1, 3}
    key = DocKey(DocType.ARTICLE, 2)
    assert await setup.index.versions([key]) == {key: Version(START, removed=True)}


async def test_a_stale_version_is_updated(setup: Setup) -> None:
    setup.publish(1, "限流 旧标题", NOW - 100)
    await setup.index_as_source(1)
    setup.publish(1, "限流 新标题", NOW)  # the edit's event was lost
    report = await setup.reconciler().sweep()
    assert report.repaired == {"missing": 0, "stale": 1, "removed": 0}
    assert await setup.titles() == {1: "限流 新标题"}
    key = DocKey(DocType.ARTICLE, 1)
    assert await setup.index.versions([key]) == {key: Version(NOW, removed=False)}


async def test_events_newer_than_the_sweeps_snapshot_are_not_undone(setup: Setup) -> None:
    setup.publish(1, "限流 一", NOW - 10)
    setup.publish(2, "限流 二", NOW - 20)
    setup.publish(3, "限流 三", NOW - 30)  # missing from the index: the sweep will add it
    await setup.index_as_source(1, 2)
    later = START + 500

    async def events_during_the_listing(call: int) -> None:
        # While the sweep lists the source, after it read the index: article 1 is edited
        # (its new update time leaves the listed window) and 4 is published; 3 is withdrawn
        # just after this page is read (the page still lists it). Their events are applied.
        if call != 1:
            return
        setup.publish(1, "限流 一 改", later)
        setup.publish(4, "限流 四", later)
        await setup.index_as_source(1, 4)
        await setup.svc.apply([Removal(DocKey(DocType.ARTICLE, 3), later)], source="kafka")

    setup.sources.articles.before_answer = events_during_the_listing
    report = await setup.reconciler().sweep()
    # The sweep offered an upsert of 3 (listed before its withdrawal) and the removal of 1
    # (no longer listed); both lost to the newer events.
    assert report.found == {"missing": 1, "stale": 0, "removed": 1}
    assert report.repaired == {"missing": 0, "stale": 0, "removed": 0}
    assert await setup.titles() == {1: "限流 一 改", 2: "限流 二", 4: "限流 四"}


async def test_a_source_failure_leaves_the_index_untouched_and_is_counted(setup: Setup) -> None:
    for article_id in range(1, 6):
        setup.publish(article_id, f"限流 第{article_id}篇", NOW - article_id)
    await setup.index_as_source(2, 4, 5)
    await setup.index_as_source(3, version=1)  # stale
    setup.sources.articles.withdraw(5)  # a missed withdrawal
    before = await setup.index.live_versions(DocType.ARTICLE)
    errors = sample("webook_search_reconcile_sweeps_total", result="error")
    last_ok = sample("webook_search_reconcile_last_success_timestamp_seconds")

    # The first page (holding the missing article 1) is read, the second call fails: a
    # partial listing must not remove what it did not reach, nor add what it did.
    setup.sources.articles.fail_from_call = 2
    with pytest.raises(SearchUnavailable) as caught:
        await setup.reconciler(page=2).sweep()
    assert caught.value.reason == Reason.SOURCE_UNAVAILABLE
    setup.sources.articles.fail_from_call = None
    setup.sources.articles.fail = True
    with pytest.raises(SearchUnavailable):
        await setup.reconciler().sweep()

    assert await setup.index.live_versions(DocType.ARTICLE) == before
    assert sample("webook_search_reconcile_sweeps_total", result="error") == errors + 2
    assert sample("webook_search_reconcile_last_success_timestamp_seconds") == last_ok
    failed = [s for s in setup.spans.get_finished_spans() if s.name == "search.reconcile"]
    assert len(failed) == 2
    assert all(not s.status.is_ok for s in failed)

    setup.sources.articles.fail = False
    report = await setup.reconciler().sweep()
    assert report.repaired == {"missing": 1, "stale": 1, "removed": 1}
    assert sample("webook_search_reconcile_last_success_timestamp_seconds") > last_ok


async def test_the_timer_sweeps_until_stopped_and_zero_disables_it(setup: Setup) -> None:
    setup.publish(1, "限流 一", NOW)
    ok = sample("webook_search_reconcile_sweeps_total", result="ok")
    disabled = setup.reconciler(interval_s=0)
    disabled.start()
    assert not disabled.enabled
    await disabled.stop()

    reconciler = setup.reconciler(interval_s=0.05)
    assert reconciler.next_wait() == pytest.approx(0.05)
    reconciler.start()
    try:
        for _ in range(600):
            if sample("webook_search_reconcile_sweeps_total", result="ok") >= ok + 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await reconciler.stop()
    assert sample("webook_search_reconcile_sweeps_total", result="ok") >= ok + 2
    assert set(await setup.titles()) == {1}
    swept = [s for s in setup.spans.get_finished_spans() if s.name == "search.reconcile"]
    assert swept
    assert swept[0].attributes is not None
    assert swept[0].attributes["search.reconcile.missing"] == 1


async def test_build_reconciler_reads_its_settings(setup: Setup) -> None:
    defaults = ReconcileSettings()
    assert defaults.reconcile_interval_seconds == 900
    reconciler = build_reconciler(
        ReconcileSettings(reconcile_interval_seconds=0), setup.svc, setup.index, setup.clients
    )
    assert not reconciler.enabled
    jittered = build_reconciler(defaults, setup.svc, setup.index, setup.clients)
    waits = [jittered.next_wait() for _ in range(200)]
    assert all(720 <= wait <= 1080 for wait in waits)
    assert len(set(waits)) > 1
