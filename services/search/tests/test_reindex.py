"""Reindexing from the source services' gRPC APIs (fakes with the real paging rules)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kit.grpcx.client import ServiceClients
from services.search.__main__ import EmptyIndexRebuild, build_runner
from services.search.domain import DocKey, DocType, TagSet, article_doc
from services.search.errors import Reason, SearchUnavailable
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, TagServiceTagSets, UserServiceDirectory
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.tests.sources import Sources, serving_sources
from services.search.tests.test_grpc_api import search_settings
from webook.search.v1 import search_pb2
from webook.search.v1.search_pb2_grpc import SearchServiceStub

NOW = 1_800_000_000_000


@pytest.fixture
async def sources() -> AsyncIterator[Sources]:
    """Fake article, user and tag services on a free port."""
    async with serving_sources() as running:
        yield running


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[SearchService, TantivySearchIndex]]:
    """A search service on a fresh index."""
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.02)
    writer.start()
    yield SearchService(index, writer, clock=lambda: NOW), index
    await writer.stop()
    await index.close()


def reindexer(
    svc: SearchService, index: TantivySearchIndex, clients: ServiceClients, page: int
) -> Reindexer:
    """A reindexer over the fakes with small pages."""
    return Reindexer(
        svc,
        index,
        ArticleServicePublished(clients, page_size=page, timeout_s=5),
        UserServiceDirectory(clients, page_size=page, timeout_s=5),
        tags=TagServiceTagSets(clients, page_size=page, timeout_s=5),
        chunk=37,
        clock=lambda: NOW,
    )


async def test_every_article_and_user_is_indexed_once_and_stale_ones_are_swept(
    sources: Sources, service: tuple[SearchService, TantivySearchIndex]
) -> None:
    svc, index = service
    # Many articles share an update time, so pages end in the middle of a tie.
    for i in range(1, 251):
        sources.articles.publish(i, f"限流算法 第{i}篇", f"<p>token bucket {i}</p>", NOW - i // 7)
    for i in range(1, 24):
        sources.users.add(i, f"作者{i}", "微服务", NOW - i)
    # Tag sets older than the topic's retention: only the tag service still knows them.
    for i in range(1, 26):
        sources.tags.tag(i * 10, 1, "熔断", f"t{i}")
    sources.tags.tag(7, 2)  # emptied by its author
    stale = article_doc(
        article_id=9999, title="限流算法 旧文", body="", author_id=1, author_name="", utime_ms=5
    )
    await svc.put_article(stale)
    clients = ServiceClients(registry=None, peers=sources.peers)
    try:
        counts = await reindexer(svc, index, clients, page=10).run()
    finally:
        await clients.close()
    assert counts == {
        "articles": 250,
        "users": 23,
        "tag_sets": 26,
        "removed": 1,
        "applied": 300,
    }
    assert await index.live_ids(DocType.ARTICLE) == set(range(1, 251))
    tagged = await svc.search("熔断", 0, 0, 50)
    assert sorted(hit.key.id for hit in tagged.hits) == [i * 10 for i in range(1, 26)]
    emptied = (await index.states([DocKey(DocType.ARTICLE, 7)]))[DocKey(DocType.ARTICLE, 7)]
    assert emptied.tags == TagSet((), 2)
    assert await index.live_ids(DocType.USER) == set(range(1, 24))
    page = await svc.search("限流算法", 0, 0, 50)
    assert page.total == 250
    assert DocKey(DocType.ARTICLE, 9999) not in {hit.key for hit in page.hits}
    # A second run changes nothing: every version is already there.
    clients = ServiceClients(registry=None, peers=sources.peers)
    try:
        again = await reindexer(svc, index, clients, page=100).run()
    finally:
        await clients.close()
    assert (again["applied"], again["removed"]) == (0, 0)


async def test_an_unreachable_source_stops_the_rebuild_clearly(
    sources: Sources, service: tuple[SearchService, TantivySearchIndex]
) -> None:
    svc, index = service
    sources.articles.fail = True
    clients = ServiceClients(registry=None, peers=sources.peers)
    try:
        with pytest.raises(SearchUnavailable) as caught:
            await reindexer(svc, index, clients, page=10).run()
    finally:
        await clients.close()
    assert caught.value.reason == Reason.SOURCE_UNAVAILABLE
    assert "article service" in caught.value.message
    sources.articles.fail, sources.tags.fail = False, True
    clients = ServiceClients(registry=None, peers=sources.peers)
    try:
        with pytest.raises(SearchUnavailable) as caught:
            await reindexer(svc, index, clients, page=10).run()
    finally:
        await clients.close()
    assert "tag service" in caught.value.message
    nowhere = ServiceClients(registry=None, peers={})
    try:
        with pytest.raises(SearchUnavailable) as caught:
            await reindexer(svc, index, nowhere, page=10).run()
    finally:
        await nowhere.close()
    assert caught.value.reason == Reason.SOURCE_UNAVAILABLE


async def test_a_service_starting_on_an_empty_index_rebuilds_it(
    tmp_path: Path, kafka_bootstrap: str, sources: Sources
) -> None:
    sources.articles.publish(1, "微服务治理", "<p>熔断与限流</p>", int(time.time() * 1000))
    sources.users.add(2, "安妮", "写微服务", int(time.time() * 1000))
    settings = search_settings(
        tmp_path / "search",
        kafka_bootstrap,
        sync_consumer_enabled=False,
        reindex_when_empty=True,
        peers=sources.peers,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        rebuild = runner.component(EmptyIndexRebuild).task
        assert rebuild is not None
        await asyncio.wait_for(rebuild, 20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await SearchServiceStub(channel).Search(
                search_pb2.SearchRequest(query="微服务")
            )
        assert sorted((h.type, h.id) for h in answer.hits) == [
            (search_pb2.DOC_TYPE_ARTICLE, 1),
            (search_pb2.DOC_TYPE_USER, 2),
        ]
    finally:
        await runner.stop()
    # Started again on the (now populated) index: no rebuild.
    calls = sources.articles.calls
    runner = build_runner(settings)
    await runner.start()
    try:
        assert runner.component(EmptyIndexRebuild).task is None
    finally:
        await runner.stop()
    assert sources.articles.calls == calls
