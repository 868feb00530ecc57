"""Replica bootstrap from a peer's snapshot: the manifest, the store, the RPCs and the copy.

The integration tests run replica A on a real index whose sync consumer reads fresh topics
of the session's broker, serve its ``SnapshotService`` on a real gRPC server (registered in
the session's etcd under a prefix of the test's own), and bootstrap replica B's empty data
directory from it; the fallback tests check that every failure leaves B empty so that it
rebuilds from the source services.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from devstack.infra import free_port
from kit.config import Mode
from kit.events import ConsumerConfig, EventProducer, ProducerConfig, TopicSpec
from kit.grpcx.client import ServiceClients
from kit.grpcx.server import ServiceRunner
from kit.tests.rpc import refusal_of
from services.search.__main__ import EmptyIndexRebuild
from services.search.domain import DocType, parse_request
from services.search.errors import DOMAIN, Reason, SearchInvalidArgument, SearchNotFound
from services.search.events import (
    ARTICLE_PUBLISHED_TOPIC,
    ARTICLE_WITHDRAWN_TOPIC,
    USER_CHANGED_TOPIC,
    sync_consumer,
    sync_group,
)
from services.search.grpc_api import SnapshotServicer
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, UserServiceDirectory
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.settings import SearchSettings
from services.search.snapshot import (
    META_FILE,
    BootstrapOutcome,
    KafkaGroupOffsets,
    PartitionOffset,
    SnapshotChunk,
    SnapshotFile,
    SnapshotManifest,
    SnapshotService,
    SnapshotSettings,
    SnapshotStore,
    bootstrap_from_peer,
    check_file_name,
    check_snapshot_id,
    committed_files,
)
from services.search.storage import DataDir
from services.search.tests.sources import serving_sources
from webook.events.v1 import events_pb2
from webook.search.v1 import search_pb2
from webook.search.v1.search_pb2_grpc import SnapshotServiceStub

NOW = int(time.time() * 1000)
PREFIX = "search-indexer"
# Generous: two indexes, a broker and etcd share two loaded cores.
DEADLINE_S = 60.0


class SnapshotSearchSettings(SearchSettings, SnapshotSettings):
    """The search settings with the snapshot mixin among their bases."""


def settings_for(data_dir: Path, **overrides: object) -> SnapshotSearchSettings:
    """Test settings of a replica on ``data_dir`` (no registry, no broker unless given)."""
    values: dict[str, object] = {
        "mode": Mode.TEST,
        "data_dir": str(data_dir),
        "grpc_port": 0,
        "metrics_port": -1,
        "shutdown_grace": 1.0,
        "snapshot_call_timeout_seconds": 20.0,
        "snapshot_bootstrap_timeout_seconds": 120.0,
        # Small chunks: every file of a test index takes several reads.
        "snapshot_chunk_bytes": 4096,
        **overrides,
    }
    return SnapshotSearchSettings.model_validate(values)


@dataclass
class Replica:
    """An open index with its writer and service."""

    data_dir: DataDir
    index: TantivySearchIndex
    index_id: str
    writer: BatchedIndexWriter
    service: SearchService

    async def close(self) -> None:
        """Commit what is pending and release the index."""
        await self.writer.stop()
        await self.index.close()


async def open_replica(path: Path) -> Replica:
    """The index of data directory ``path`` (created if missing), with a started writer."""
    data_dir = DataDir(path)
    index, index_id = data_dir.open_index(
        writer_heap_bytes=15_000_000, writer_threads=1, recency_boost=1.0
    )
    writer = BatchedIndexWriter(index, commit_interval_s=0.05)
    writer.start()
    return Replica(data_dir, index, index_id, writer, SearchService(index, writer))


@pytest.fixture
async def replica_a(tmp_path: Path) -> AsyncIterator[Replica]:
    """Replica A with articles and users indexed through the direct input, and one article
    indexed then updated and another withdrawn (deletions in committed segments)."""
    replica = await open_replica(tmp_path / "a")
    service = replica.service
    # One group commit for the first documents; the rewrite and the withdrawal come later,
    # so that they delete documents of a committed segment.
    await asyncio.gather(
        *(
            service.input_article(
                article_id=article_id,
                title=f"微服务治理 第{article_id}篇",
                content_html=f"<p>熔断 限流 负载均衡 article {article_id}</p>",
                author_id=7,
                author_name="Ada",
                published=True,
                utime_ms=NOW - article_id * 1000,
            )
            for article_id in range(1, 31)
        )
    )
    await service.input_user(user_id=3, nickname="安妮", about_me="写微服务")
    await service.input_article(
        article_id=5,
        title="微服务治理 改写",
        content_html="<p>rewritten</p>",
        author_id=7,
        author_name="Ada",
        published=True,
        utime_ms=NOW,
    )
    await service.remove_article(6, version=NOW)
    yield replica
    await replica.close()


QUERIES = ("微服务", "熔断 限流", "article", "rewritten", "安妮", "改写", "事件", "消息队列")


async def answers(index: TantivySearchIndex) -> dict[str, list[tuple[int, int, str]]]:
    """``(type, id, title)`` of the results of every query of :data:`QUERIES`."""
    found: dict[str, list[tuple[int, int, str]]] = {}
    for text in QUERIES:
        page = await index.search(parse_request(text, 0, 0, 50), now_ms=NOW)
        # Sorted: a background merge of one index (purging deleted documents) may move
        # scores a little; which documents match must not change.
        found[text] = sorted((int(h.key.type), h.key.id, h.title) for h in page.hits)
    return found


def counter(name: str, **labels: str) -> float:
    """A counter's value now (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- names, ids and the manifest -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "meta.json",
        "0f3a9c2e4b5d6e7f8a9b0c1d2e3f4a5b.idx",
        "0f3a9c2e4b5d6e7f8a9b0c1d2e3f4a5b.17.del",
    ],
)
def test_index_file_names_are_accepted(name: str) -> None:
    check_file_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../index-id",
        "../../etc/passwd",
        "/etc/passwd",
        "index/meta.json",
        "a\\b",
        ".managed.json",
        ".tantivy-writer.lock",
        "a..b",
        "meta.json\x00",
        "x" * 300,
    ],
)
def test_names_that_could_leave_the_snapshot_are_refused(name: str) -> None:
    with pytest.raises(SearchInvalidArgument) as caught:
        check_file_name(name)
    assert caught.value.reason == Reason.INVALID_DOCUMENT


def test_snapshot_ids_are_32_hex_digits() -> None:
    check_snapshot_id(uuid.uuid4().hex)
    for bad in ("", "../x", uuid.uuid4().hex.upper(), uuid.uuid4().hex + "0", "g" * 32):
        with pytest.raises(SearchInvalidArgument):
            check_snapshot_id(bad)


def manifest(**changes: object) -> SnapshotManifest:
    """A well-formed manifest, with ``changes``."""
    values: dict[str, object] = {
        "snapshot_id": uuid.uuid4().hex,
        "files": (SnapshotFile(META_FILE, 120), SnapshotFile("ab.idx", 4096)),
        "offsets": (PartitionOffset("t", 0, 5), PartitionOffset("t", 1, 0)),
        "created_ms": NOW,
        **changes,
    }
    return SnapshotManifest(**values)  # type: ignore[arg-type]


def test_the_manifest_round_trips_and_totals_its_files() -> None:
    original = manifest()
    assert SnapshotManifest.from_json(original.to_json()) == original
    assert original.total_bytes == 4216
    assert original.file("ab.idx") == SnapshotFile("ab.idx", 4096)
    assert original.file("manifest.json") is None
    original.check()
    with pytest.raises(ValueError, match="not a snapshot manifest"):
        SnapshotManifest.from_json(json.dumps({"snapshot_id": "x"}))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"snapshot_id": "nope"}, Reason.INVALID_DOCUMENT),
        ({"files": (SnapshotFile("ab.idx", 1),)}, Reason.INVALID_DOCUMENT),
        ({"files": (SnapshotFile(META_FILE, 1), SnapshotFile("../x", 1))}, Reason.INVALID_DOCUMENT),
        (
            {"files": (SnapshotFile(META_FILE, 1), SnapshotFile(META_FILE, 1))},
            Reason.INVALID_DOCUMENT,
        ),
        ({"files": (SnapshotFile(META_FILE, -1),)}, Reason.INVALID_PAGE),
        ({"offsets": (PartitionOffset("t", 0, -1),)}, Reason.INVALID_PAGE),
        ({"offsets": (PartitionOffset("", 0, 1),)}, Reason.INVALID_PAGE),
    ],
)
def test_a_malformed_manifest_from_a_peer_is_refused(
    changes: dict[str, object], reason: Reason
) -> None:
    with pytest.raises(SearchInvalidArgument) as caught:
        manifest(**changes).check()
    assert caught.value.reason == reason


async def test_meta_json_names_every_segment_file_and_the_live_deletion_file(
    replica_a: Replica,
) -> None:
    index_path = replica_a.data_dir.index_path
    meta = (index_path / META_FILE).read_bytes()
    present = set(os.listdir(index_path))
    names = committed_files(meta, present)
    segments = json.loads(meta)["segments"]
    assert len(names) == 6 * len(segments) + sum(1 for s in segments if s["deletes"])
    assert any(name.endswith(".del") for name in names)
    assert set(names) <= present
    with pytest.raises(FileNotFoundError):
        committed_files(meta, present - {names[0]})


# -- the store -------------------------------------------------------------------------


async def read_whole(store: SnapshotStore, snapshot_id: str, name: str, chunk: int) -> bytes:
    """A file of a snapshot, read ``chunk`` bytes at a time."""
    data = b""
    while True:
        part = await asyncio.to_thread(store.read, snapshot_id, name, len(data), chunk)
        data += part.data
        if part.eof:
            return data


async def test_a_snapshot_is_the_committed_index_and_outlives_later_commits(
    tmp_path: Path, replica_a: Replica
) -> None:
    index_path = replica_a.data_dir.index_path
    store = SnapshotStore(tmp_path / "snapshots", ttl_s=60)
    offsets = [PartitionOffset("t", 0, 12)]
    prepared = await asyncio.to_thread(store.take, index_path, offsets)
    taken = prepared.manifest
    assert taken.offsets == (PartitionOffset("t", 0, 12),)
    assert abs(prepared.expires_at_ms - (time.time() + 60) * 1000) < 30_000
    originals = {f.name: (index_path / f.name).read_bytes() for f in taken.files}
    assert {f.name: f.size for f in taken.files} == {n: len(b) for n, b in originals.items()}

    # The index moves on (new segments, a merge may delete the copied ones' names).
    for article_id in range(100, 140):
        await replica_a.service.input_article(
            article_id=article_id,
            title="later",
            content_html="later",
            author_id=1,
            author_name="Bo",
            published=True,
            utime_ms=NOW,
        )
    for name, content in originals.items():
        assert await read_whole(store, taken.snapshot_id, name, 1000) == content
    # A new replica installs the copy as its own index: it answers as A did when copied.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, content in originals.items():
        (copy / name).write_bytes(content)
    opened = TantivySearchIndex(copy, writer_heap_bytes=15_000_000)
    try:
        assert opened.num_docs() == {DocType.ARTICLE: 29, DocType.USER: 1}
    finally:
        await opened.close()


async def test_reads_are_bounded_and_refuse_what_is_not_a_file_of_the_snapshot(
    tmp_path: Path, replica_a: Replica
) -> None:
    store = SnapshotStore(tmp_path / "snapshots", ttl_s=60)
    taken = (await asyncio.to_thread(store.take, replica_a.data_dir.index_path, [])).manifest
    snapshot_id = taken.snapshot_id
    big = max(taken.files, key=lambda f: f.size)
    assert big.size > 100
    first = store.read(snapshot_id, big.name, 0, 100)
    assert (len(first.data), first.eof) == (100, False)
    assert store.read(snapshot_id, big.name, big.size, 100) == SnapshotChunk(b"", True)

    with pytest.raises(SearchInvalidArgument) as invalid:
        store.read(snapshot_id, big.name, -1, 100)
    assert invalid.value.reason == Reason.INVALID_PAGE
    with pytest.raises(SearchInvalidArgument):
        store.read(snapshot_id, big.name, big.size + 1, 100)
    with pytest.raises(SearchInvalidArgument):
        store.read(snapshot_id, "../../index/meta.json", 0, 100)
    with pytest.raises(SearchNotFound):
        store.read(snapshot_id, "manifest.json", 0, 100)
    with pytest.raises(SearchNotFound):
        store.read(uuid.uuid4().hex, META_FILE, 0, 100)


async def test_snapshots_expire_unless_read_and_abandoned_copies_go_too(
    tmp_path: Path, replica_a: Replica
) -> None:
    clock = [time.time()]
    store = SnapshotStore(tmp_path / "snapshots", ttl_s=100, clock=lambda: clock[0])
    index_path = replica_a.data_dir.index_path
    kept = (await asyncio.to_thread(store.take, index_path, [])).manifest.snapshot_id
    dropped = (await asyncio.to_thread(store.take, index_path, [])).manifest.snapshot_id
    abandoned = tmp_path / "snapshots" / f".{uuid.uuid4().hex}.tmp"
    abandoned.mkdir()
    os.utime(abandoned, (clock[0] - 500, clock[0] - 500))

    clock[0] += 60
    store.read(kept, META_FILE, 0, 10)
    clock[0] += 60
    assert store.expire() == 2
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [kept]
    with pytest.raises(SearchNotFound):
        store.manifest(dropped)
    clock[0] += 101
    with pytest.raises(SearchNotFound):
        store.manifest(kept)


def test_an_index_whose_files_keep_vanishing_is_not_copied(tmp_path: Path) -> None:
    index_path = tmp_path / "index"
    index_path.mkdir()
    segment = {"segment_id": str(uuid.uuid4()), "max_doc": 1, "deletes": None}
    (index_path / META_FILE).write_text(json.dumps({"segments": [segment], "schema": []}))
    store = SnapshotStore(tmp_path / "snapshots", ttl_s=60)
    with pytest.raises(Exception, match="changed under") as caught:
        store.take(index_path, [])
    assert getattr(caught.value, "reason", "") == Reason.INDEX_UNAVAILABLE
    assert list((tmp_path / "snapshots").iterdir()) == []


# -- the RPCs --------------------------------------------------------------------------


@asynccontextmanager
async def serving(
    settings: SnapshotSearchSettings, snapshots: SnapshotService
) -> AsyncIterator[ServiceRunner]:
    """``snapshots`` behind the kit's server (error mapping, registration when etcd is set)."""
    runner = ServiceRunner("search", settings)
    runner.mount(SnapshotServicer(snapshots))
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


def local_snapshots(replica: Replica, **options: object) -> SnapshotService:
    """A snapshot service of ``replica`` without a consumer group (no offsets to read)."""
    return SnapshotService(
        SnapshotStore(replica.data_dir.snapshots_path, ttl_s=600),
        replica.data_dir.index_path,
        KafkaGroupOffsets("127.0.0.1:1"),
        group=None,
        chunk_bytes=4096,
        **options,  # type: ignore[arg-type]
    )


refusal = partial(refusal_of, domain=DOMAIN)


async def test_bad_reads_answer_invalid_argument_or_not_found(
    tmp_path: Path, replica_a: Replica
) -> None:
    async with (
        serving(settings_for(tmp_path / "a"), local_snapshots(replica_a)) as runner,
        grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel,
    ):
        stub = SnapshotServiceStub(channel)
        prepared = await stub.PrepareSnapshot(search_pb2.PrepareSnapshotRequest())
        assert list(prepared.offsets) == []
        assert prepared.expires_at_ms > time.time() * 1000
        sizes = {f.name: f.size for f in prepared.files}
        big = max(sizes, key=lambda name: sizes[name])
        assert sizes[big] > 4096
        # More than the server's chunk is never sent, whatever the caller asks for.
        answer = await stub.ReadSnapshot(
            search_pb2.ReadSnapshotRequest(
                snapshot_id=prepared.snapshot_id, name=big, max_bytes=1 << 22
            )
        )
        assert (len(answer.data), answer.eof) == (4096, False)

        snapshot_id = prepared.snapshot_id
        invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        cases = [
            ({"snapshot_id": "../../index", "name": META_FILE}, invalid, Reason.INVALID_DOCUMENT),
            (
                {"snapshot_id": uuid.uuid4().hex, "name": META_FILE},
                missing,
                Reason.INDEX_UNAVAILABLE,
            ),
            ({"snapshot_id": snapshot_id, "name": "../index-id"}, invalid, Reason.INVALID_DOCUMENT),
            ({"snapshot_id": snapshot_id, "name": "/etc/passwd"}, invalid, Reason.INVALID_DOCUMENT),
            (
                {"snapshot_id": snapshot_id, "name": "manifest.json"},
                missing,
                Reason.INDEX_UNAVAILABLE,
            ),
            (
                {"snapshot_id": snapshot_id, "name": META_FILE, "offset": -1},
                invalid,
                Reason.INVALID_PAGE,
            ),
            (
                {"snapshot_id": snapshot_id, "name": META_FILE, "max_bytes": -5},
                invalid,
                Reason.INVALID_PAGE,
            ),
        ]
        for fields, status, reason in cases:
            request = search_pb2.ReadSnapshotRequest(**fields)  # type: ignore[arg-type]
            assert await refusal(stub.ReadSnapshot(request)) == (status, reason), fields


async def test_an_index_being_rebuilt_is_not_offered(tmp_path: Path, replica_a: Replica) -> None:
    async with (
        serving(
            settings_for(tmp_path / "a"), local_snapshots(replica_a, ready=lambda: False)
        ) as runner,
        grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel,
    ):
        call = SnapshotServiceStub(channel).PrepareSnapshot(search_pb2.PrepareSnapshotRequest())
        assert await refusal(call) == (grpc.StatusCode.UNAVAILABLE, Reason.INDEX_UNAVAILABLE)


# -- bootstrapping ---------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check()`` holds; fail after :data:`DEADLINE_S`."""
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE_S} s")
        await asyncio.sleep(0.1)


@pytest.mark.integration
async def test_a_new_replica_copies_a_peers_index_and_resumes_at_its_offsets(
    tmp_path: Path, replica_a: Replica, kafka_bootstrap: str, etcd_endpoint: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        ARTICLE_PUBLISHED_TOPIC: f"snapshot-published-{suffix}",
        ARTICLE_WITHDRAWN_TOPIC: f"snapshot-withdrawn-{suffix}",
        USER_CHANGED_TOPIC: f"snapshot-users-{suffix}",
    }
    names = list(topics.values())
    group_a = sync_group(PREFIX, replica_a.index_id)
    consumer = sync_consumer(
        replica_a.service,
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=group_a,
            max_wait_s=0.1,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            topic_partitions=2,
            stop_timeout_s=2.0,
        ),
        topics=topics,
    )
    producer = EventProducer(
        ProducerConfig(
            bootstrap=kafka_bootstrap,
            topics=tuple(TopicSpec(name, 2) for name in names),
            request_timeout_ms=3000,
        )
    )
    offsets = KafkaGroupOffsets(kafka_bootstrap, timeout_s=20)
    producer.start()
    consumer.start()
    try:
        published = topics[ARTICLE_PUBLISHED_TOPIC]
        for article_id in range(200, 210):
            event = events_pb2.ArticlePublished(
                article_id=article_id,
                title=f"事件驱动 {article_id}",
                content="<p>消息队列 article</p>",
                author_id=8,
                author_name="Cy",
                utime_ms=NOW,
            )
            assert producer.publish(published, article_id, event)
        withdrawn = events_pb2.ArticleWithdrawn(article_id=201, author_id=8, at_ms=NOW + 1)
        assert producer.publish(topics[ARTICLE_WITHDRAWN_TOPIC], 201, withdrawn)
        changed = events_pb2.UserChanged(user_id=40, nickname="事件用户", at_ms=NOW)
        assert producer.publish(topics[USER_CHANGED_TOPIC], 40, changed)
        assert await producer.flush(20)
        events = 12

        async def all_consumed() -> bool:
            return sum(o.offset for o in await offsets.committed(group_a, names)) == events

        await eventually(all_consumed, "replica A consumed and committed every event")

        prefix = f"/webook-test-{suffix}/services"
        settings_a = settings_for(
            tmp_path / "a", etcd_endpoints=[etcd_endpoint], registry_prefix=prefix
        )
        snapshots = SnapshotService(
            SnapshotStore(replica_a.data_dir.snapshots_path, ttl_s=600),
            replica_a.data_dir.index_path,
            offsets,
            group=group_a,
            topics=names,
        )
        settings_b = settings_for(
            tmp_path / "b",
            etcd_endpoints=[etcd_endpoint],
            registry_prefix=prefix,
            kafka_bootstrap=kafka_bootstrap,
        )
        copied_before = counter("webook_search_bootstraps_total", result="peer")
        received_before = counter("webook_search_snapshot_bytes_total", direction="received")
        async with serving(settings_a, snapshots) as runner:
            result = await bootstrap_from_peer(settings_b, DataDir(tmp_path / "b"))
        assert result.outcome is BootstrapOutcome.PEER, result.reason
        assert not result.rebuild_needed
        assert result.peer == runner.address
        assert counter("webook_search_bootstraps_total", result="peer") == copied_before + 1
        received = counter("webook_search_snapshot_bytes_total", direction="received")
        assert received - received_before == result.bytes_copied > 0
        assert not (tmp_path / "b" / "incoming").exists()
        committed_a = await offsets.committed(group_a, names)
    finally:
        await consumer.stop()
        await producer.stop()

    replica_b = await open_replica(tmp_path / "b")
    try:
        assert replica_b.index_id == result.index_id != replica_a.index_id
        assert replica_b.index.num_docs() == replica_a.index.num_docs()
        expected = await answers(replica_a.index)
        assert expected["事件"]
        assert expected["微服务"]
        assert await answers(replica_b.index) == expected
        group_b = sync_group(PREFIX, replica_b.index_id)
        assert await offsets.committed(group_b, names) == committed_a
        assert sum(o.offset for o in committed_a) == events
    finally:
        await replica_b.close()


@pytest.mark.integration
async def test_a_short_download_leaves_the_replica_empty_and_it_rebuilds(
    tmp_path: Path, replica_a: Replica
) -> None:
    class Truncating(SnapshotService):
        """Ends every file after half of its first chunk."""

        async def read(
            self, snapshot_id: str, name: str, offset: int, max_bytes: int
        ) -> SnapshotChunk:
            chunk = await super().read(snapshot_id, name, offset, max_bytes)
            return SnapshotChunk(chunk.data[: len(chunk.data) // 2], eof=True)

    truncating = Truncating(
        SnapshotStore(replica_a.data_dir.snapshots_path, ttl_s=600),
        replica_a.data_dir.index_path,
        KafkaGroupOffsets("127.0.0.1:1"),
        group=None,
    )
    failed_before = counter("webook_search_bootstraps_total", result="failed")
    async with serving(settings_for(tmp_path / "a"), truncating) as runner:
        settings_b = settings_for(tmp_path / "b", peers={"search": runner.address})
        result = await bootstrap_from_peer(settings_b, DataDir(tmp_path / "b"))
    assert result.outcome is BootstrapOutcome.FAILED
    assert result.rebuild_needed
    assert "ended at" in result.reason
    assert counter("webook_search_bootstraps_total", result="failed") == failed_before + 1
    assert not DataDir(tmp_path / "b").has_index()
    assert not (tmp_path / "b" / "incoming").exists()

    # The start goes on as before: an empty index, rebuilt from the source services.
    async with serving_sources() as sources:
        sources.articles.publish(1, "微服务治理", "<p>熔断与限流</p>", NOW)
        sources.users.add(2, "安妮", "写微服务", NOW)
        replica_b = await open_replica(tmp_path / "b")
        clients = ServiceClients(registry=None, peers=sources.peers)
        try:
            reindexer = Reindexer(
                replica_b.service,
                replica_b.index,
                ArticleServicePublished(clients, timeout_s=10),
                UserServiceDirectory(clients, timeout_s=10),
            )
            rebuild = EmptyIndexRebuild(replica_b.index, reindexer)
            rebuild.start()
            assert rebuild.task is not None
            await asyncio.wait_for(rebuild.task, DEADLINE_S)
            assert replica_b.index.num_docs() == {DocType.ARTICLE: 1, DocType.USER: 1}
        finally:
            await clients.close()
            await replica_b.close()


async def test_without_a_peer_the_replica_rebuilds(tmp_path: Path) -> None:
    rebuilds_before = counter("webook_search_bootstraps_total", result="rebuild")
    result = await bootstrap_from_peer(settings_for(tmp_path / "b"), DataDir(tmp_path / "b"))
    assert (result.outcome, result.reason) == (
        BootstrapOutcome.REBUILD,
        "no other search instance to copy the index from",
    )
    assert counter("webook_search_bootstraps_total", result="rebuild") == rebuilds_before + 1
    disabled = settings_for(tmp_path / "b", snapshot_bootstrap_enabled=False)
    assert (await bootstrap_from_peer(disabled, DataDir(tmp_path / "b"))).rebuild_needed


async def test_an_unreachable_peer_means_a_rebuild(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "b", peers={"search": f"127.0.0.1:{free_port()}"})
    result = await bootstrap_from_peer(settings, DataDir(tmp_path / "b"))
    assert result.outcome is BootstrapOutcome.FAILED
    assert "UNAVAILABLE" in result.reason
    assert not DataDir(tmp_path / "b").has_index()


async def test_an_empty_peer_index_is_not_copied(tmp_path: Path) -> None:
    empty = await open_replica(tmp_path / "a")
    try:
        async with serving(settings_for(tmp_path / "a"), local_snapshots(empty)) as runner:
            settings_b = settings_for(tmp_path / "b", peers={"search": runner.address})
            result = await bootstrap_from_peer(settings_b, DataDir(tmp_path / "b"))
    finally:
        await empty.close()
    assert result.outcome is BootstrapOutcome.REBUILD
    assert "is empty" in result.reason


async def test_a_data_directory_with_an_index_is_left_alone(
    tmp_path: Path, replica_a: Replica
) -> None:
    leftover = replica_a.data_dir.incoming_path
    leftover.mkdir()
    (leftover / "partial.idx").write_bytes(b"x")
    result = await bootstrap_from_peer(
        settings_for(tmp_path / "a", peers={"search": "127.0.0.1:1"}), replica_a.data_dir
    )
    assert result.outcome is BootstrapOutcome.SKIPPED
    assert not result.rebuild_needed
    assert not leftover.exists()
