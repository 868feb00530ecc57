"""Integration tests of the article service on real SQL (SQLite and MariaDB) and real Redis."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Connection

from devstack.infra import ManagedProcess
from kit.errors import AppError
from kit.migrations import schema_drift
from services.article.domain import ArticleStatus, Popularity
from services.article.errors import Reason
from services.article.repository.cache import (
    FIRST_PAGE_CACHE,
    PUBLISHED_CACHE,
    first_page_key,
    published_key,
)
from services.article.repository.dao import Base
from services.article.tests.conftest import BASE_TTL, POPULAR_TTL
from services.article.tests.stack import ArticleStack

ALICE, BOB = 1, 2


def cache_requests(cache: str, result: str) -> float:
    """Current value of ``webook_cache_requests_total`` for one of the article caches."""
    value = REGISTRY.get_sample_value(
        "webook_cache_requests_total", {"cache": cache, "result": result}
    )
    return value or 0.0


async def test_round_trip_through_both_stores(article_stack: ArticleStack) -> None:
    service = article_stack.service
    content = "<h1>标题</h1><p>正文 😀 <b>bold</b></p>" + "<p>more</p>" * 100
    article_id = await service.save(ALICE, 0, "草稿", content)
    draft = await service.get_by_id(ALICE, article_id)
    assert (draft.title, draft.content, draft.status) == (
        "草稿",
        content,
        ArticleStatus.UNPUBLISHED,
    )
    assert draft.abstract.startswith("标题 正文 😀 bold more")
    assert len(draft.abstract) == 128

    assert await service.publish(ALICE, article_id, "发布", content) == article_id
    published = await service.get_published(article_id, BOB)
    assert (published.title, published.content, published.author_name) == ("发布", content, "Alice")
    assert (await service.get_by_id(ALICE, article_id)).status is ArticleStatus.PUBLISHED

    await service.withdraw(ALICE, article_id)
    with pytest.raises(AppError) as caught:
        await service.get_published(article_id, BOB)
    assert caught.value.reason == Reason.NOT_FOUND
    async with article_stack.engine.connect() as conn:
        statuses = (
            await conn.execute(
                text(
                    "SELECT a.status, p.status FROM articles a "
                    "JOIN published_articles p ON p.id = a.id WHERE a.id = :id"
                ),
                {"id": article_id},
            )
        ).one()
    assert tuple(statuses) == (3, 3)


async def test_large_content_fits(article_stack: ArticleStack) -> None:
    # 200,000 four-byte characters: 800 KB, more than MySQL's TEXT holds.
    content = "😀" * 200_000
    article_id = await article_stack.service.publish(ALICE, 0, "big", content)
    await article_stack.redis.flushdb()
    assert (await article_stack.service.get_published(article_id, 0)).content == content


async def test_first_page_is_cached_and_dropped_on_every_write(
    article_stack: ArticleStack,
) -> None:
    service = article_stack.service
    ids = [await service.save(ALICE, 0, f"a{i}", "") for i in range(3)]
    misses = cache_requests(FIRST_PAGE_CACHE, "miss")
    assert [a.id for a in await service.list_by_author(ALICE, 0, 2)] == ids[::-1][:2]
    assert await article_stack.redis.exists(first_page_key(ALICE))
    hits = cache_requests(FIRST_PAGE_CACHE, "hit")
    assert [a.id for a in await service.list_by_author(ALICE, 0, 100)] == ids[::-1]
    assert cache_requests(FIRST_PAGE_CACHE, "hit") == hits + 1
    assert cache_requests(FIRST_PAGE_CACHE, "miss") == misses + 1
    # Later pages come from the database.
    assert [a.id for a in await service.list_by_author(ALICE, 1, 1)] == [ids[1]]

    for write in (
        lambda: service.save(ALICE, ids[0], "edited", ""),
        lambda: service.publish(ALICE, ids[1], "published", "<p>x</p>"),
        lambda: service.withdraw(ALICE, ids[1]),
        lambda: service.save(ALICE, 0, "new", ""),
    ):
        await service.list_by_author(ALICE, 0, 10)
        await write()
        assert not await article_stack.redis.exists(first_page_key(ALICE))
    listed = await service.list_by_author(ALICE, 0, 10)
    assert [a.title for a in listed] == ["new", "published", "edited", "a2"]
    assert listed[1].status is ArticleStatus.PRIVATE


async def test_failed_transactions_leave_no_trace(article_stack: ArticleStack) -> None:
    article_id = await article_stack.service.save(ALICE, 0, "mine", "")
    with pytest.raises(AppError):
        await article_stack.service.publish(BOB, article_id, "stolen", "<p>x</p>")
    async with article_stack.engine.connect() as conn:
        count = await conn.scalar(text("SELECT COUNT(*) FROM published_articles"))
    assert count == 0
    assert (await article_stack.service.get_by_id(ALICE, article_id)).title == "mine"


async def test_published_cache_ttl_follows_popularity(article_stack: ArticleStack) -> None:
    service, redis = article_stack.service, article_stack.redis
    article_id = await service.publish(ALICE, 0, "t", "<p>x</p>")
    assert await redis.ttl(published_key(article_id)) in range(BASE_TTL - 10, BASE_TTL + 1)
    await redis.delete(published_key(article_id))
    article_stack.popularity.value = Popularity(reads=100)
    misses = cache_requests(PUBLISHED_CACHE, "miss")
    await service.get_published(article_id, BOB)
    assert cache_requests(PUBLISHED_CACHE, "miss") == misses + 1
    assert await redis.ttl(published_key(article_id)) in range(POPULAR_TTL - 10, POPULAR_TTL + 1)
    # A hit does not touch the database: change the row behind the cache's back.
    async with article_stack.engine.begin() as conn:
        await conn.execute(text("UPDATE published_articles SET title = 'behind'"))
    assert (await service.get_published(article_id, BOB)).title == "t"


async def test_concurrent_publications_of_one_article_leave_one_reader_copy(
    article_stack: ArticleStack,
) -> None:
    service = article_stack.service
    article_id = await service.save(ALICE, 0, "draft", "")
    await asyncio.gather(
        *(service.publish(ALICE, article_id, f"v{i}", f"<p>{i}</p>") for i in range(5))
    )
    async with article_stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT p.title, a.title FROM published_articles p "
                    "JOIN articles a ON a.id = p.id"
                )
            )
        ).all()
    assert len(rows) == 1
    # The reader copy is the version whose publication committed last.
    assert rows[0][0] == rows[0][1]


async def test_list_published_by_window(article_stack: ArticleStack) -> None:
    service = article_stack.service
    ids = [await service.publish(ALICE, 0, f"p{i}", "<p>x</p>") for i in range(3)]
    await service.withdraw(ALICE, ids[1])
    listed = await service.list_published(0, 2**62, 0, 10)
    assert [a.id for a in listed] == [ids[2], ids[0]]
    assert {a.author_name for a in listed} == {"Alice"}
    assert [a.id for a in await service.list_published(0, 2**62, 1, 10)] == [ids[0]]


async def test_reads_work_while_redis_is_down(
    article_stack: ArticleStack, redis_server: ManagedProcess
) -> None:
    service = article_stack.service
    article_id = await service.publish(ALICE, 0, "t", "<p>x</p>")
    errors = cache_requests(PUBLISHED_CACHE, "error")
    await asyncio.to_thread(redis_server.stop)
    try:
        assert (await service.get_published(article_id, BOB)).title == "t"
        await service.save(ALICE, article_id, "offline", "")
        assert [a.title for a in await service.list_by_author(ALICE, 0, 10)] == ["offline"]
        assert cache_requests(PUBLISHED_CACHE, "error") >= errors + 1
    finally:
        await asyncio.to_thread(redis_server.start)
    assert (await service.get_published(article_id, BOB)).title == "t"


async def test_migrations_match_the_models(database_url: str, article_stack: ArticleStack) -> None:
    def diff(connection: Connection) -> list[object]:
        return schema_drift(connection, Base.metadata, "article")

    async with article_stack.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
