"""Unit tests of the article use cases on in-memory fakes of every port."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from kit.errors import AppError, ErrorKind
from services.article.domain import (
    ArticleStatus,
    Popularity,
    PublishedArticle,
    tiered_ttl,
)
from services.article.errors import DOMAIN, Reason
from services.article.service import ArticleService
from services.article.tests.fakes import (
    FakeAuthors,
    FakePopularity,
    FakePublishedCache,
    FakeUnitOfWork,
    InMemoryArticleStore,
    RecordedEvents,
)

ALICE, BOB = 1, 2
BASE_TTL, POPULAR_TTL = 600, 3600


class Clock:
    """A clock that moves one second per reading, so updates order strictly."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store() -> InMemoryArticleStore:
    return InMemoryArticleStore()


@pytest.fixture
def cache() -> FakePublishedCache:
    return FakePublishedCache()


@pytest.fixture
def authors() -> FakeAuthors:
    return FakeAuthors({ALICE: "Alice", BOB: "Bob"})


@pytest.fixture
def popularity() -> FakePopularity:
    return FakePopularity()


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def service(
    store: InMemoryArticleStore,
    cache: FakePublishedCache,
    authors: FakeAuthors,
    popularity: FakePopularity,
    events: RecordedEvents,
) -> ArticleService:
    return ArticleService(
        lambda: FakeUnitOfWork(store, events),
        published_cache=cache,
        authors=authors,
        popularity=popularity,
        ttl_policy=tiered_ttl(
            base_s=BASE_TTL,
            popular_s=POPULAR_TTL,
            followers_threshold=1000,
            reads_threshold=5000,
        ),
        events=events,
        clock=Clock(),
    )


def assert_refused(error: AppError, kind: ErrorKind, reason: Reason) -> None:
    assert (error.kind, error.reason, error.domain) == (kind, reason, DOMAIN)
    assert error.message


async def test_save_creates_then_updates_a_draft(
    service: ArticleService, store: InMemoryArticleStore, events: RecordedEvents
) -> None:
    article_id = await service.save(ALICE, 0, " Hello\n world ", "<p>first</p>")
    assert await service.save(ALICE, article_id, "Hello", "<p>second</p>") == article_id
    article = await service.get_by_id(ALICE, article_id)
    assert (article.title, article.content, article.status) == (
        "Hello",
        "<p>second</p>",
        ArticleStatus.UNPUBLISHED,
    )
    assert article.utime_ms > article.ctime_ms
    assert store.published == {}
    assert events.published == []


async def test_drafts_may_be_empty_but_publishing_needs_title_and_content(
    service: ArticleService,
) -> None:
    assert await service.save(ALICE, 0, "", "") > 0
    with pytest.raises(AppError) as caught:
        await service.publish(ALICE, 0, "  ", "<p>x</p>")
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_TITLE)
    with pytest.raises(AppError) as caught:
        await service.publish(ALICE, 0, "Title", "<script>only a script</script>")
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_CONTENT)


@pytest.mark.parametrize(
    ("title", "content", "reason"),
    [
        ("t" * 257, "", Reason.INVALID_TITLE),
        ("", "c" * 200_001, Reason.INVALID_CONTENT),
    ],
)
async def test_oversized_input_is_refused(
    service: ArticleService, store: InMemoryArticleStore, title: str, content: str, reason: Reason
) -> None:
    with pytest.raises(AppError) as caught:
        await service.save(ALICE, 0, title, content)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, reason)
    assert store.commits == 0


async def test_limits_are_inclusive(service: ArticleService) -> None:
    article_id = await service.save(ALICE, 0, "标" * 256, "c" * 200_000)
    assert (await service.get_by_id(ALICE, article_id)).title == "标" * 256


async def test_publish_copies_to_the_reader_store_and_caches_with_author_name(
    service: ArticleService,
    store: InMemoryArticleStore,
    cache: FakePublishedCache,
    events: RecordedEvents,
) -> None:
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    assert (await service.get_by_id(ALICE, article_id)).status is ArticleStatus.PUBLISHED
    copy, status = store.published[article_id]
    assert (copy.title, copy.content, status) == ("Title", "<p>Body</p>", ArticleStatus.PUBLISHED)
    cached, ttl = cache.entries[article_id]
    assert (cached.author_name, ttl) == ("Alice", BASE_TTL)
    assert [e.id for e in events.published] == [article_id]
    assert events.published[0].author_name == "Alice"


async def test_editing_a_published_article_leaves_readers_on_the_published_version(
    service: ArticleService,
) -> None:
    article_id = await service.publish(ALICE, 0, "v1", "<p>one</p>")
    await service.save(ALICE, article_id, "v2", "<p>two</p>")
    assert (await service.get_by_id(ALICE, article_id)).status is ArticleStatus.UNPUBLISHED
    assert (await service.get_published(article_id, BOB)).title == "v1"
    await service.publish(ALICE, article_id, "v2", "<p>two</p>")
    assert (await service.get_published(article_id, BOB)).title == "v2"


async def test_withdraw_hides_from_readers_and_republishing_shows_again(
    service: ArticleService, cache: FakePublishedCache, events: RecordedEvents
) -> None:
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    await service.get_published(article_id, BOB)
    await service.withdraw(ALICE, article_id)
    await service.withdraw(ALICE, article_id)
    assert article_id not in cache.entries
    assert (await service.get_by_id(ALICE, article_id)).status is ArticleStatus.PRIVATE
    with pytest.raises(AppError) as caught:
        await service.get_published(article_id, BOB)
    assert_refused(caught.value, ErrorKind.NOT_FOUND, Reason.NOT_FOUND)
    assert events.withdrawn == [(article_id, ALICE), (article_id, ALICE)]

    await service.publish(ALICE, article_id, "Title", "<p>Back</p>")
    assert (await service.get_published(article_id, BOB)).content == "<p>Back</p>"


async def test_withdrawing_a_never_published_draft_emits_nothing(
    service: ArticleService, events: RecordedEvents
) -> None:
    article_id = await service.save(ALICE, 0, "Draft", "")
    await service.withdraw(ALICE, article_id)
    assert (await service.get_by_id(ALICE, article_id)).status is ArticleStatus.PRIVATE
    assert events.withdrawn == []


async def test_only_the_author_may_touch_or_see_an_article(
    service: ArticleService, store: InMemoryArticleStore
) -> None:
    article_id = await service.publish(ALICE, 0, "Mine", "<p>mine</p>")
    commits = store.commits
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: service.save(BOB, article_id, "Stolen", ""),
        lambda: service.publish(BOB, article_id, "Stolen", "<p>x</p>"),
        lambda: service.withdraw(BOB, article_id),
        lambda: service.get_by_id(BOB, article_id),
    ]
    for attempt in attempts:
        with pytest.raises(AppError) as caught:
            await attempt()
        assert_refused(caught.value, ErrorKind.PERMISSION_DENIED, Reason.NOT_AUTHOR)
    assert store.commits == commits
    assert (await service.get_published(article_id, BOB)).title == "Mine"


@pytest.mark.parametrize("article_id", [-1, 999])
async def test_unknown_ids_are_not_found(service: ArticleService, article_id: int) -> None:
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: service.save(ALICE, article_id, "t", ""),
        lambda: service.publish(ALICE, article_id, "t", "<p>x</p>"),
        lambda: service.withdraw(ALICE, article_id),
        lambda: service.get_by_id(ALICE, article_id),
        lambda: service.get_published(article_id, ALICE),
    ]
    for attempt in attempts:
        with pytest.raises(AppError) as caught:
            await attempt()
        assert_refused(caught.value, ErrorKind.NOT_FOUND, Reason.NOT_FOUND)


async def test_drafts_are_not_visible_to_readers(service: ArticleService) -> None:
    article_id = await service.save(ALICE, 0, "Draft", "<p>x</p>")
    with pytest.raises(AppError) as caught:
        await service.get_published(article_id, ALICE)
    assert_refused(caught.value, ErrorKind.NOT_FOUND, Reason.NOT_FOUND)


@pytest.mark.parametrize("author_id", [0, -3])
async def test_anonymous_authors_are_refused(service: ArticleService, author_id: int) -> None:
    with pytest.raises(AppError) as caught:
        await service.save(author_id, 0, "t", "")
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_AUTHOR)


async def test_list_is_newest_first_and_paged(service: ArticleService) -> None:
    ids = [await service.save(ALICE, 0, f"a{i}", f"<p>{i}</p>") for i in range(5)]
    await service.save(BOB, 0, "bob's", "")
    await service.save(ALICE, ids[0], "a0 edited", "")
    listed = await service.list_by_author(ALICE, 0, 3)
    assert [a.id for a in listed] == [ids[0], ids[4], ids[3]]
    assert [a.id for a in await service.list_by_author(ALICE, 3, 100)] == [ids[2], ids[1]]
    assert listed[1].abstract == "4"


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, 101)])
async def test_list_refuses_bad_pages(service: ArticleService, offset: int, limit: int) -> None:
    with pytest.raises(AppError) as caught:
        await service.list_by_author(ALICE, offset, limit)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_PAGE)


async def test_reads_are_served_from_the_cache_and_counted(
    service: ArticleService,
    store: InMemoryArticleStore,
    cache: FakePublishedCache,
    events: RecordedEvents,
) -> None:
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    # Behind the service's back: the cached copy is what readers get until it expires.
    cached, ttl = cache.entries[article_id]
    cache.entries[article_id] = (dataclasses.replace(cached, title="cached"), ttl)
    assert (await service.get_published(article_id, BOB)).title == "cached"
    await service.get_published(article_id, 0)
    assert events.reads == [(article_id, BOB), (article_id, 0)]


async def test_a_read_miss_fills_the_cache_with_the_popularity_ttl(
    service: ArticleService, cache: FakePublishedCache, popularity: FakePopularity
) -> None:
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    cache.entries.clear()
    popularity.value = Popularity(followers=1000)
    article = await service.get_published(article_id, BOB)
    assert article.author_name == "Alice"
    assert cache.entries[article_id] == (article, POPULAR_TTL)


async def test_reads_survive_the_user_service_being_down_without_caching_the_gap(
    service: ArticleService, cache: FakePublishedCache, authors: FakeAuthors
) -> None:
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    cache.entries.clear()
    authors.down = True
    article = await service.get_published(article_id, BOB)
    assert (article.title, article.author_name) == ("Title", "")
    assert article_id not in cache.entries
    authors.down = False
    assert (await service.get_published(article_id, BOB)).author_name == "Alice"
    assert article_id in cache.entries


async def test_publish_while_the_user_service_is_down_still_publishes(
    service: ArticleService, cache: FakePublishedCache, authors: FakeAuthors, events: RecordedEvents
) -> None:
    authors.down = True
    article_id = await service.publish(ALICE, 0, "Title", "<p>Body</p>")
    assert article_id not in cache.entries
    assert events.published[0].author_name == ""
    assert (await service.get_published(article_id, BOB)).title == "Title"


async def test_list_published_by_window_with_names(
    service: ArticleService, store: InMemoryArticleStore, authors: FakeAuthors
) -> None:
    first = await service.publish(ALICE, 0, "first", "<p>1</p>")
    second = await service.publish(BOB, 0, "second", "<p>2</p>")
    await service.save(ALICE, 0, "draft", "")
    withdrawn = await service.publish(ALICE, 0, "gone", "<p>3</p>")
    await service.withdraw(ALICE, withdrawn)
    everything = await service.list_published(0, 2**62, 0, 10)
    assert [(a.id, a.author_name) for a in everything] == [(second, "Bob"), (first, "Alice")]
    first_utime = store.published[first][0].utime_ms
    assert [a.id for a in await service.list_published(0, first_utime + 1, 0, 10)] == [first]
    assert [a.id for a in await service.list_published(first_utime + 1, 2**62, 0, 10)] == [second]
    authors.down = True
    assert {a.author_name for a in await service.list_published(0, 2**62, 0, 10)} == {""}


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 10), (20, 10)])
async def test_list_published_refuses_bad_windows(
    service: ArticleService, start: int, end: int
) -> None:
    with pytest.raises(AppError) as caught:
        await service.list_published(start, end, 0, 10)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_TIME_WINDOW)


@pytest.mark.parametrize(
    ("popularity", "ttl"),
    [
        (Popularity(), BASE_TTL),
        (Popularity(followers=999, reads=4999), BASE_TTL),
        (Popularity(followers=1000), POPULAR_TTL),
        (Popularity(reads=5000), POPULAR_TTL),
    ],
)
def test_tiered_ttl(popularity: Popularity, ttl: int) -> None:
    policy = tiered_ttl(
        base_s=BASE_TTL, popular_s=POPULAR_TTL, followers_threshold=1000, reads_threshold=5000
    )
    article = PublishedArticle(1, 1, "t", "c", "a", 0, 0)
    assert policy(article, popularity) == ttl


async def test_published_exists_names_only_published_articles_and_counts_no_read(
    service: ArticleService, store: InMemoryArticleStore, events: RecordedEvents
) -> None:
    published = await service.publish(ALICE, 0, "Out", "<p>x</p>")
    draft = await service.save(ALICE, 0, "Draft", "<p>x</p>")
    withdrawn = await service.publish(BOB, 0, "Gone", "<p>x</p>")
    await service.withdraw(BOB, withdrawn)

    assert await service.published_exists([published, draft, withdrawn, 999_999, 0, -3]) == {
        published
    }
    assert events.reads == []


async def test_published_exists_answers_cached_articles_without_sql(
    service: ArticleService, store: InMemoryArticleStore, cache: FakePublishedCache
) -> None:
    published = await service.publish(ALICE, 0, "Out", "<p>x</p>")
    assert published in cache.entries
    assert await service.published_exists([published, published]) == {published}
    assert store.published_queries == 0
    # Not cached (expired, or never read): the reader store answers.
    await cache.delete(published)
    assert await service.published_exists([published]) == {published}
    assert store.published_queries == 1
    assert await service.published_exists([0, -1]) == set()
    assert store.published_queries == 1


async def test_published_exists_refuses_more_than_100_ids(service: ArticleService) -> None:
    with pytest.raises(AppError) as caught:
        await service.published_exists(range(1, 102))
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.TOO_MANY_IDS)
    assert await service.published_exists([1] * 150) == set()
