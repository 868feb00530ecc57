"""In-memory fakes of the article service's ports, for unit tests of the use cases.

:class:`InMemoryArticleStore` plays the database (both stores, committed state);
:class:`FakeUnitOfWork` stages writes and applies them on commit only, so tests can see that
a use case commits (or does not). The other fakes record what the service asked of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from services.article.domain import (
    Article,
    ArticleStatus,
    ArticleSummary,
    Draft,
    Page,
    Popularity,
    PublishedArticle,
    TimeWindow,
)
from services.article.service import AuthorDirectoryUnavailable


@dataclass
class InMemoryArticleStore:
    """Committed author-store articles and reader copies (with their published status)."""

    articles: dict[int, Article] = field(default_factory=dict)
    published: dict[int, tuple[PublishedArticle, ArticleStatus]] = field(default_factory=dict)
    next_id: int = 1
    commits: int = 0
    # How often the reader store was asked which ids are published.
    published_queries: int = 0


def _summary(article: Article) -> ArticleSummary:
    return ArticleSummary(
        id=article.id,
        author_id=article.author_id,
        title=article.title,
        abstract=article.abstract,
        status=article.status,
        ctime_ms=article.ctime_ms,
        utime_ms=article.utime_ms,
    )


class FakeArticleRepository:
    """The ``ArticleRepository`` port over an :class:`InMemoryArticleStore`."""

    def __init__(self, store: InMemoryArticleStore) -> None:
        self._store = store
        self.articles: dict[int, Article] = {}
        self.published: dict[int, tuple[PublishedArticle, ArticleStatus]] = {}

    def _article(self, article_id: int) -> Article | None:
        return self.articles.get(article_id) or self._store.articles.get(article_id)

    def _copy(self, article_id: int) -> tuple[PublishedArticle, ArticleStatus] | None:
        return self.published.get(article_id) or self._store.published.get(article_id)

    async def create(
        self, author_id: int, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Stage a new article."""
        article = Article(
            id=self._store.next_id,
            author_id=author_id,
            title=draft.title,
            content=draft.content,
            abstract=draft.abstract,
            status=status,
            ctime_ms=now_ms,
            utime_ms=now_ms,
        )
        self._store.next_id += 1
        self.articles[article.id] = article
        return article

    async def get_for_update(self, article_id: int) -> Article | None:
        """The article (no locking needed in memory)."""
        return self._article(article_id)

    async def get(self, article_id: int) -> Article | None:
        """The article."""
        return self._article(article_id)

    async def update(
        self, article: Article, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Stage the edit."""
        updated = dataclasses.replace(
            article,
            title=draft.title,
            content=draft.content,
            abstract=draft.abstract,
            status=status,
            utime_ms=now_ms,
        )
        self.articles[article.id] = updated
        return updated

    async def set_status(self, article: Article, status: ArticleStatus, *, now_ms: int) -> Article:
        """Stage the status change."""
        updated = dataclasses.replace(article, status=status, utime_ms=now_ms)
        self.articles[article.id] = updated
        return updated

    async def list_by_author(self, author_id: int, page: Page) -> list[ArticleSummary]:
        """Newest first."""
        own = [
            a
            for a in {**self._store.articles, **self.articles}.values()
            if a.author_id == author_id
        ]
        own.sort(key=lambda a: (a.utime_ms, a.id), reverse=True)
        return [_summary(a) for a in own[page.offset : page.offset + page.limit]]

    async def save_published(self, article: Article) -> None:
        """Stage the reader copy."""
        self.published[article.id] = (PublishedArticle.of(article), ArticleStatus.PUBLISHED)

    async def withdraw_published(self, article_id: int, *, now_ms: int) -> bool:
        """Stage the withdrawal of the reader copy."""
        copy = self._copy(article_id)
        if copy is None:
            return False
        self.published[article_id] = (
            dataclasses.replace(copy[0], utime_ms=now_ms),
            ArticleStatus.PRIVATE,
        )
        return True

    async def get_published(self, article_id: int) -> PublishedArticle | None:
        """The reader copy if published."""
        copy = self._copy(article_id)
        return copy[0] if copy and copy[1] is ArticleStatus.PUBLISHED else None

    async def published_ids(self, article_ids: Sequence[int]) -> set[int]:
        """Those of ``article_ids`` with a published copy."""
        self._store.published_queries += 1
        return {i for i in article_ids if await self.get_published(i) is not None}

    async def list_published(self, window: TimeWindow, page: Page) -> list[PublishedArticle]:
        """Published copies in the window, newest first."""
        copies = [
            a
            for a, status in {**self._store.published, **self.published}.values()
            if status is ArticleStatus.PUBLISHED and window.start_ms <= a.utime_ms < window.end_ms
        ]
        copies.sort(key=lambda a: (a.utime_ms, a.id), reverse=True)
        return copies[page.offset : page.offset + page.limit]


class StagedEvents:
    """Change events of one fake unit of work, handed to ``sink`` only if it commits."""

    def __init__(self) -> None:
        self.staged: list[Callable[[RecordedEvents], None]] = []

    def article_published(self, article: PublishedArticle, *, at_ms: int) -> None:
        """Stage a publication."""
        self.staged.append(lambda sink: sink.article_published(article, at_ms=at_ms))

    def article_withdrawn(self, article_id: int, author_id: int, *, at_ms: int) -> None:
        """Stage a withdrawal."""
        self.staged.append(lambda sink: sink.article_withdrawn(article_id, author_id, at_ms=at_ms))


class FakeUnitOfWork:
    """Applies the repository's staged writes (and events, to ``events``) on commit."""

    def __init__(self, store: InMemoryArticleStore, events: RecordedEvents | None = None) -> None:
        self._store = store
        self._articles = FakeArticleRepository(store)
        self._sink = events
        self.events = StagedEvents()

    @property
    def articles(self) -> FakeArticleRepository:
        """The repository of this unit of work."""
        return self._articles

    async def __aenter__(self) -> Self:
        """Begin."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drop whatever was not committed."""
        self._articles.articles.clear()
        self._articles.published.clear()
        self.events.staged.clear()

    async def commit(self) -> None:
        """Make the staged writes visible to later units of work."""
        self._store.articles.update(self._articles.articles)
        self._store.published.update(self._articles.published)
        self._articles.articles.clear()
        self._articles.published.clear()
        self._store.commits += 1
        staged, self.events.staged = self.events.staged, []
        if self._sink is not None:
            for emit in staged:
                emit(self._sink)


@dataclass
class FakePublishedCache:
    """A dict with the TTL of each entry."""

    entries: dict[int, tuple[PublishedArticle, int]] = field(default_factory=dict)

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The cached view."""
        entry = self.entries.get(article_id)
        return entry[0] if entry else None

    async def set(self, article: PublishedArticle, *, ttl_s: int, fill: bool = False) -> None:
        """Cache with its TTL."""
        self.entries[article.id] = (article, ttl_s)

    async def delete(self, article_id: int) -> None:
        """Drop the view."""
        self.entries.pop(article_id, None)


@dataclass
class FakeAuthors:
    """Nicknames by user id; ``down`` makes every lookup fail."""

    names_by_id: dict[int, str] = field(default_factory=dict)
    down: bool = False
    calls: int = 0

    async def names(self, user_ids: Sequence[int]) -> dict[int, str]:
        """The known names among ``user_ids``."""
        self.calls += 1
        if self.down:
            raise AuthorDirectoryUnavailable("user service unavailable")
        return {i: self.names_by_id[i] for i in user_ids if i in self.names_by_id}


@dataclass
class FakePopularity:
    """A fixed popularity for every article."""

    value: Popularity = field(default_factory=Popularity)

    async def popularity(self, author_id: int, article_id: int) -> Popularity:
        """The fixed value."""
        return self.value


@dataclass
class RecordedEvents:
    """Every event the service emitted, in order."""

    reads: list[tuple[int, int]] = field(default_factory=list)
    published: list[PublishedArticle] = field(default_factory=list)
    withdrawn: list[tuple[int, int]] = field(default_factory=list)

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """Record a read."""
        self.reads.append((article_id, user_id))

    def article_published(self, article: PublishedArticle, *, at_ms: int) -> None:
        """Record a publication."""
        self.published.append(article)

    def article_withdrawn(self, article_id: int, author_id: int, *, at_ms: int) -> None:
        """Record a withdrawal."""
        self.withdrawn.append((article_id, author_id))
