"""Articles found by their tags: tag sets from ``webook.tag.changed`` on the real index.

A tag set is versioned on its own (the tag service's version of the article's set), so the
tests offer tag changes and article changes in every order and check that neither undoes
the other, that a withdrawn article stays hidden, and that the tags survive what rewrites
documents wholesale: author renames, reindexing, snapshots and schema migrations.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kit.events import ConsumedEvent
from services.search import index as index_module
from services.search.domain import (
    NO_TAGS,
    ArticleDoc,
    DocKey,
    DocType,
    Removal,
    Retag,
    SyncChange,
    TagSet,
    Upsert,
    UserDoc,
    article_doc,
    user_doc,
)
from services.search.events import SYNC_SOURCE, TAGS_CHANGED_TOPIC, IndexSync
from services.search.index import SCHEMA_VERSION, TantivySearchIndex, build_schema
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.snapshot import (
    META_FILE,
    SnapshotStore,
    expected_schema,
    index_schema,
    readable_schemas,
)

NOW = 1_800_000_000_000
ARTICLE = DocKey(DocType.ARTICLE, 1)


def article(
    article_id: int = 1, *, title: str = "限流算法", body: str = "令牌桶", utime_ms: int = NOW
) -> ArticleDoc:
    """An article by author 7."""
    return article_doc(
        article_id=article_id,
        title=title,
        body=body,
        author_id=7,
        author_name="Ada",
        utime_ms=utime_ms,
    )


def retag(version: int, *names: str, article_id: int = 1) -> Retag:
    """The change a ``resource_tags`` event of article ``article_id`` decodes to."""
    return Retag(article_id, TagSet(tuple(sorted(names)), version))


class Index:
    """A service on a real index in a temporary directory, with a short commit interval."""

    def __init__(self, path: Path) -> None:
        self.index = TantivySearchIndex(path, writer_heap_bytes=15_000_000)
        self.writer = BatchedIndexWriter(self.index, commit_interval_s=0.02)
        self.writer.start()
        self.service = SearchService(self.index, self.writer, clock=lambda: NOW)

    async def offer(self, *changes: SyncChange) -> int:
        """Offer ``changes`` one call each, in order; returns how many were applied."""
        applied = 0
        for change in changes:
            applied += await self.service.apply([change], source="kafka")
        return applied

    async def found(self, text: str, doc_type: int = 0) -> list[int]:
        """Ids of the hits of ``text``, best first."""
        page = await self.service.search(text, doc_type, 0, 10)
        return [hit.key.id for hit in page.hits]

    async def tags(self, key: DocKey = ARTICLE) -> TagSet | None:
        """The tag set the index commits for ``key``."""
        state = (await self.index.states([key])).get(key)
        return None if state is None else state.tags

    async def close(self) -> None:
        """Commit what is pending and release the index."""
        await self.writer.stop()
        await self.index.close()


@pytest.fixture
async def idx(tmp_path: Path) -> AsyncIterator[Index]:
    """A fresh index."""
    opened = Index(tmp_path / "index")
    yield opened
    await opened.close()


async def test_a_tag_name_finds_the_article_and_counts_like_a_title_word(idx: Index) -> None:
    await idx.offer(
        Upsert(article(1, title="限流算法", body="令牌桶"), NOW),
        Upsert(article(2, title="熔断", body="kafka 消费者 与 服务网格"), NOW),
        retag(1, "kafka", "微服务"),
    )
    # The tag ranks its article above one that only mentions the word in its body.
    assert await idx.found("kafka") == [1, 2]
    assert await idx.found("kafka", DocType.ARTICLE) == [1, 2]
    assert await idx.found("微服务 令牌桶") == [1]
    assert await idx.found("kafka", DocType.USER) == []


async def test_a_later_publication_keeps_the_tags_and_a_new_set_replaces_the_names(
    idx: Index,
) -> None:
    await idx.offer(Upsert(article(utime_ms=NOW), NOW), retag(1, "kafka"))
    assert await idx.offer(Upsert(article(title="限流 改写", utime_ms=NOW + 5), NOW + 5)) == 1
    assert await idx.found("kafka") == [1]
    assert await idx.found("改写") == [1]
    assert await idx.offer(retag(2, "rust", "go")) == 1
    assert await idx.found("kafka") == []
    assert await idx.found("rust") == await idx.found("go") == [1]
    assert await idx.offer(retag(3)) == 1
    assert await idx.found("rust") == []
    assert await idx.tags() == TagSet((), 3)


async def test_a_stale_or_repeated_tag_set_changes_nothing(idx: Index) -> None:
    await idx.offer(Upsert(article(), NOW))
    # Version 3 arrives before version 2 (a late redelivery), then again (a repeat).
    assert await idx.offer(retag(3, "new"), retag(2, "old"), retag(3, "new")) == 1
    assert await idx.found("new") == [1]
    assert await idx.found("old") == []
    assert await idx.tags() == TagSet(("new",), 3)
    # The same holds within one batch, and against the pending (not yet committed) set.
    assert await idx.service.apply([retag(5, "five"), retag(4, "four")], source="kafka") == 1
    assert await idx.tags() == TagSet(("five",), 5)


async def test_tags_that_arrive_before_the_publication_apply_once_it_is_published(
    idx: Index,
) -> None:
    assert await idx.offer(retag(1, "early")) == 1
    assert await idx.found("early") == []
    assert idx.index.num_docs() == {DocType.ARTICLE: 0, DocType.USER: 0}
    await idx.offer(Upsert(article(title="限流算法", utime_ms=NOW), NOW))
    assert await idx.found("early") == [1]
    # A stale publication from before the tags changes nothing of them either.
    assert await idx.offer(Upsert(article(utime_ms=NOW - 1), NOW - 1)) == 0
    assert await idx.tags() == TagSet(("early",), 1)


async def test_a_withdrawn_article_stays_hidden_whatever_its_tags(idx: Index) -> None:
    await idx.offer(Upsert(article(), NOW), retag(1, "kafka"))
    await idx.offer(Removal(ARTICLE, NOW + 1))
    assert await idx.found("kafka") == []
    # Tags changed after the withdrawal are kept, hidden, not searchable.
    assert await idx.offer(retag(2, "rust")) == 1
    assert await idx.found("rust") == []
    assert await idx.found("kafka") == []
    assert (await idx.index.versions([ARTICLE]))[ARTICLE].removed
    # A stale publication cannot revive it; a later one brings the latest tags back.
    assert await idx.offer(Upsert(article(utime_ms=NOW), NOW)) == 0
    assert await idx.found("rust") == []
    await idx.offer(Upsert(article(utime_ms=NOW + 2), NOW + 2))
    assert await idx.found("rust") == [1]
    assert await idx.found("kafka") == []


async def test_a_withdrawal_pending_with_tags_hides_the_article_before_its_commit(
    tmp_path: Path,
) -> None:
    idx = Index(tmp_path / "index")
    await idx.offer(Upsert(article(), NOW), retag(1, "kafka"))
    await idx.writer.stop()
    slow = BatchedIndexWriter(idx.index, commit_interval_s=30)
    slow.start()
    service = SearchService(idx.index, slow, clock=lambda: NOW)
    pending = asyncio.create_task(
        service.apply([Removal(ARTICLE, NOW + 1), retag(2, "rust")], source="kafka")
    )
    for _ in range(200):
        if slow.pending:
            break
        await asyncio.sleep(0.01)
    assert [hit.key for hit in (await service.search("kafka", 0, 0, 10)).hits] == []
    await slow.stop()
    assert await pending == 2
    assert await idx.tags() == TagSet(("rust",), 2)
    await idx.index.close()


async def test_an_author_rename_keeps_the_tags(idx: Index) -> None:
    await idx.offer(Upsert(article(), NOW), retag(1, "kafka"))
    renamed = user_doc(user_id=7, nickname="Ada Lovelace", about_me="", utime_ms=NOW)
    await idx.offer(Upsert(renamed, NOW))
    page = await idx.service.search("kafka", 0, 0, 10)
    assert [(hit.key.id, hit.author_name) for hit in page.hits] == [(1, "Ada Lovelace")]
    assert await idx.tags() == TagSet(("kafka",), 1)


class Source:
    """The article and user services as the reindexer reads them (no tags in them)."""

    def __init__(self, articles: Sequence[ArticleDoc]) -> None:
        self._articles = articles

    async def published(self, *, before_ms: int) -> AsyncIterator[ArticleDoc]:
        """The articles given, newest first."""
        for doc in sorted(self._articles, key=lambda a: -a.utime_ms):
            if doc.utime_ms < before_ms:
                yield doc

    async def users(self) -> AsyncIterator[UserDoc]:
        """No users."""
        none: tuple[UserDoc, ...] = ()
        for user in none:
            yield user


async def test_a_reindex_keeps_the_tags_it_cannot_read_from_the_sources(idx: Index) -> None:
    await idx.offer(
        Upsert(article(1, utime_ms=NOW), NOW),
        Upsert(article(2, title="熔断", utime_ms=NOW), NOW),
        retag(1, "kafka"),
        retag(1, "rust", article_id=2),
    )
    # The source has article 1 edited since, and no longer lists article 2.
    source = Source([article(1, title="限流 改写", utime_ms=NOW + 5)])
    reindexer = Reindexer(idx.service, idx.index, source, source, clock=lambda: NOW + 10)
    counts = await reindexer.run()
    assert (counts["articles"], counts["removed"]) == (1, 1)
    assert await idx.found("kafka") == [1]
    assert await idx.found("改写") == [1]
    assert await idx.found("rust") == []
    assert await idx.tags(DocKey(DocType.ARTICLE, 2)) == TagSet(("rust",), 1)


async def test_the_sync_handler_skips_what_decoded_to_no_change(idx: Index) -> None:
    def consumed(offset: int, payload: SyncChange | None) -> ConsumedEvent[SyncChange | None]:
        return ConsumedEvent(TAGS_CHANGED_TOPIC, 0, offset, b"7", NOW, payload)

    labels = {"source": SYNC_SOURCE, "result": "skipped"}
    before = REGISTRY.get_sample_value("webook_search_sync_changes_total", labels) or 0.0
    await idx.offer(Upsert(article(), NOW))
    sync = IndexSync(idx.service)
    await sync([consumed(1, None), consumed(2, retag(1, "go")), consumed(3, None)])
    assert REGISTRY.get_sample_value("webook_search_sync_changes_total", labels) == before + 2
    assert await idx.found("go") == [1]
    await sync([consumed(4, None)])
    assert REGISTRY.get_sample_value("webook_search_sync_changes_total", labels) == before + 3


async def test_the_tags_survive_a_snapshot_and_its_restore(tmp_path: Path) -> None:
    idx = Index(tmp_path / "a")
    try:
        await idx.offer(
            Upsert(article(1), NOW),
            retag(2, "kafka", "微服务"),
            Upsert(article(2, title="熔断"), NOW),
            Removal(DocKey(DocType.ARTICLE, 2), NOW + 1),
            retag(4, "rust", article_id=2),
            retag(1, "early", article_id=3),
        )
        store = SnapshotStore(tmp_path / "snapshots", ttl_s=60)
        prepared = await asyncio.to_thread(store.take, idx.index.path, [])
    finally:
        await idx.close()
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "snapshots" / prepared.manifest.snapshot_id, copy)
    restored = Index(copy)
    try:
        assert await restored.found("kafka") == await restored.found("微服务") == [1]
        assert await restored.found("rust") == await restored.found("early") == []
        keys = [DocKey(DocType.ARTICLE, i) for i in (1, 2, 3)]
        assert {k.id: s.tags for k, s in (await restored.index.states(keys)).items()} == {
            1: TagSet(("kafka", "微服务"), 2),
            2: TagSet(("rust",), 4),
            3: TagSet(("early",), 1),
        }
        # Events re-consumed after the snapshot's offsets apply or are ignored by version.
        assert await restored.offer(retag(2, "kafka", "微服务"), retag(1, "x", article_id=3)) == 0
        await restored.offer(Upsert(article(3, title="后来发布"), NOW + 2))
        assert await restored.found("early") == [3]
    finally:
        await restored.close()


async def write_index_without_tags(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live article and a withdrawn one in an index of the schema before tags."""
    with monkeypatch.context() as patched:
        patched.setattr(index_module, "build_schema", lambda: build_schema(2))
        old = TantivySearchIndex(path, writer_heap_bytes=15_000_000)
        await old.write(
            [Upsert(article(1), NOW, NO_TAGS), Removal(DocKey(DocType.ARTICLE, 2), NOW, NO_TAGS)]
        )
        await old.close()


async def test_an_index_from_before_tags_is_migrated_and_takes_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index"
    await write_index_without_tags(path, monkeypatch)
    meta = (path / META_FILE).read_bytes()
    # A peer's snapshot of that schema is accepted (it is migrated the same way when opened).
    assert index_schema(meta) in readable_schemas()
    assert index_schema(meta) != expected_schema(SCHEMA_VERSION)
    idx = Index(path)
    try:
        assert await idx.tags() == NO_TAGS
        assert await idx.found("限流算法") == [1]
        await idx.offer(retag(1, "kafka"), retag(1, "rust", article_id=2))
        assert await idx.found("kafka") == [1]
        assert await idx.found("rust") == []
    finally:
        await idx.close()


def test_only_known_schema_versions_are_built() -> None:
    with pytest.raises(ValueError, match="unknown"):
        build_schema(1)
