"""Article documents follow their author's nickname, whatever order the events arrive in.

The changes are decoded from real event payloads (the consumer's decoders) and applied to
a real index in a temporary directory through the versioned writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.search.domain import Change, DocKey, DocType
from services.search.events import (
    decode_article_published,
    decode_article_withdrawn,
    decode_user_changed,
)
from services.search.index import TantivySearchIndex
from services.search.service import BatchedIndexWriter, SearchService
from webook.events.v1 import events_pb2

NOW = 1_800_000_000_000
ADA = 7
BOB = 8


def published(article_id: int, author_id: int, author_name: str, utime_ms: int) -> Change:
    """The change of an ``ArticlePublished`` event."""
    return decode_article_published(
        events_pb2.ArticlePublished(
            article_id=article_id,
            title=f"限流算法 第{article_id}篇",
            content="<p>令牌桶</p>",
            author_id=author_id,
            author_name=author_name,
            utime_ms=utime_ms,
        ).SerializeToString()
    )


def user_changed(user_id: int, nickname: str, at_ms: int) -> Change:
    """The change of a ``UserChanged`` event."""
    return decode_user_changed(
        events_pb2.UserChanged(
            user_id=user_id, nickname=nickname, about_me="写代码", at_ms=at_ms
        ).SerializeToString()
    )


def withdrawn(article_id: int, at_ms: int) -> Change:
    """The change of an ``ArticleWithdrawn`` event."""
    return decode_article_withdrawn(
        events_pb2.ArticleWithdrawn(article_id=article_id, at_ms=at_ms).SerializeToString()
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SearchService]:
    """A service on a fresh index: Ada (user 7) wrote articles 1 and 2, Bob article 3."""
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.02)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    await svc.apply(
        [
            user_changed(ADA, "Ada", NOW),
            published(1, ADA, "Ada", NOW + 1),
            published(2, ADA, "Ada", NOW + 2),
            published(3, BOB, "Bob", NOW + 3),
        ],
        source="kafka",
    )
    yield svc
    await writer.stop()
    await index.close()


async def authors(svc: SearchService, text: str = "限流算法") -> dict[int, str]:
    """Article id → the author name its hit shows, for the articles matching ``text``."""
    page = await svc.search(text, int(DocType.ARTICLE), 0, 50)
    return {hit.key.id: hit.author_name for hit in page.hits}


async def test_a_rename_rewrites_every_article_of_the_author(service: SearchService) -> None:
    assert await authors(service) == {1: "Ada", 2: "Ada", 3: "Bob"}
    assert await service.apply([user_changed(ADA, "Grace Hopper", NOW + 10)], source="kafka") == 1
    assert await authors(service) == {1: "Grace Hopper", 2: "Grace Hopper", 3: "Bob"}
    # Searchable by the new name only; the user document itself follows too.
    assert set(await authors(service, "grace hopper")) == {1, 2}
    assert await authors(service, "ada") == {}
    users = await service.search("grace", int(DocType.USER), 0, 10)
    assert [hit.key for hit in users.hits] == [DocKey(DocType.USER, ADA)]


async def test_older_article_events_do_not_bring_the_old_name_back(
    service: SearchService,
) -> None:
    await service.apply([user_changed(ADA, "Grace", NOW + 10)], source="kafka")
    # A duplicate of article 1's publish arrives late: superseded by version.
    assert await service.apply([published(1, ADA, "Ada", NOW + 1)], source="kafka") == 0
    # Article 4's publish (older than the rename, first seen now) takes the current name.
    assert await service.apply([published(4, ADA, "Ada", NOW + 5)], source="kafka") == 1
    # So does an edit newer than the rename whose event carries a name looked up earlier.
    assert await service.apply([published(2, ADA, "Ada", NOW + 20)], source="kafka") == 1
    assert await authors(service) == {1: "Grace", 2: "Grace", 3: "Bob", 4: "Grace"}


async def test_a_replayed_older_user_change_renames_nothing(service: SearchService) -> None:
    await service.apply([user_changed(ADA, "Grace", NOW + 10)], source="kafka")
    replay = [user_changed(ADA, "Ada", NOW), user_changed(ADA, "Ada the First", NOW + 5)]
    assert await service.apply(replay, source="kafka") == 0
    assert await authors(service) == {1: "Grace", 2: "Grace", 3: "Bob"}
    # The next real rename still applies.
    await service.apply([user_changed(ADA, "Countess", NOW + 30)], source="kafka")
    assert await authors(service) == {1: "Countess", 2: "Countess", 3: "Bob"}


@pytest.mark.parametrize("user_first", [True, False])
async def test_a_rename_and_an_article_in_one_batch_agree_in_either_order(
    service: SearchService, user_first: bool
) -> None:
    rename = user_changed(ADA, "Grace", NOW + 10)
    article = published(5, ADA, "Ada", NOW + 11)
    batch = [rename, article] if user_first else [article, rename]
    assert await service.apply(batch, source="kafka") == 2
    assert await authors(service) == {1: "Grace", 2: "Grace", 3: "Bob", 5: "Grace"}


async def test_an_article_pending_commit_follows_a_rename_accepted_after_it(
    tmp_path: Path,
) -> None:
    index = TantivySearchIndex(tmp_path / "index")
    # A long interval: both offers wait in one pending batch until stop() commits it.
    writer = BatchedIndexWriter(index, commit_interval_s=30)
    writer.start()
    svc = SearchService(index, writer, clock=lambda: NOW)
    try:
        offers = [
            asyncio.create_task(svc.apply([published(6, ADA, "Ada", NOW)], source="kafka")),
        ]
        await asyncio.sleep(0)
        offers.append(
            asyncio.create_task(svc.apply([user_changed(ADA, "Grace", NOW + 10)], source="kafka"))
        )
        for _ in range(500):
            if writer.pending == 2:
                break
            await asyncio.sleep(0.01)
        assert writer.pending == 2
        await writer.stop()
        assert [await offer for offer in offers] == [1, 1]
        assert await authors(svc) == {6: "Grace"}
    finally:
        await writer.stop()
        await index.close()


async def test_a_rename_undone_before_its_commit_leaves_the_first_name(
    tmp_path: Path,
) -> None:
    index = TantivySearchIndex(tmp_path / "index")
    quick = BatchedIndexWriter(index, commit_interval_s=0.02)
    quick.start()
    svc = SearchService(index, quick, clock=lambda: NOW)
    await svc.apply([user_changed(ADA, "Ada", NOW), published(1, ADA, "Ada", NOW)], source="kafka")
    await quick.stop()
    # Renamed and renamed back within one pending batch: the article ends with "Ada".
    slow = BatchedIndexWriter(index, commit_interval_s=30)
    slow.start()
    svc = SearchService(index, slow, clock=lambda: NOW)
    try:
        offers = [
            asyncio.create_task(svc.apply([user_changed(ADA, "Grace", NOW + 1)], source="kafka"))
        ]
        for _ in range(500):
            if slow.pending == 2:  # the user and the rewritten article
                break
            await asyncio.sleep(0.01)
        assert slow.pending == 2
        offers.append(
            asyncio.create_task(svc.apply([user_changed(ADA, "Ada", NOW + 2)], source="kafka"))
        )
        user = DocKey(DocType.USER, ADA)
        for _ in range(500):
            # Accepted: the pending user change is the second rename (white-box, since the
            # offer itself waits for the commit that stop() makes).
            if slow._pending[user].version == NOW + 2:
                break
            await asyncio.sleep(0.01)
        assert slow._pending[user].version == NOW + 2
        await slow.stop()
        assert [await offer for offer in offers] == [1, 1]
        assert await authors(svc) == {1: "Ada"}
    finally:
        await slow.stop()
        await index.close()


async def test_articles_keep_their_event_name_until_the_author_is_known(
    service: SearchService,
) -> None:
    await service.apply([published(7, 42, "Zed", NOW)], source="kafka")
    assert (await authors(service))[7] == "Zed"
    await service.apply([user_changed(42, "Zoe", NOW + 1)], source="kafka")
    assert (await authors(service))[7] == "Zoe"


async def test_a_rename_does_not_revive_a_withdrawn_article(service: SearchService) -> None:
    await service.apply([withdrawn(2, NOW + 5)], source="kafka")
    await service.apply([user_changed(ADA, "Grace", NOW + 10)], source="kafka")
    assert await authors(service) == {1: "Grace", 3: "Bob"}
    # Withdrawn in the same batch as the rename: still gone.
    await service.apply(
        [user_changed(ADA, "Hopper", NOW + 20), withdrawn(1, NOW + 20)], source="kafka"
    )
    assert await authors(service) == {3: "Bob"}
