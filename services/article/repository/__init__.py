"""Storage adapters of the article service: SQL (the truth) plus Redis caches.

- :class:`CachedArticleRepository` implements
  :class:`services.article.service.ArticleRepository` on an
  :class:`~services.article.repository.dao.ArticleDAO`; an author's first page is read
  cache-aside from :class:`~services.article.repository.cache.FirstPageCache`, and every write
  marks the author's first page stale.
- :class:`SqlUnitOfWork` implements :class:`services.article.service.UnitOfWork`: one session
  and transaction per use case; after a successful commit it drops the stale first pages
  (write the database first, then delete the cache).

The reader-view cache (:class:`~services.article.repository.cache.RedisPublishedArticleCache`)
is filled by the service, which alone may ask the user service for author names.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import CachingUnitOfWork, SessionFactory, row_mapper
from services.article.domain import (
    Article,
    ArticleStatus,
    ArticleSummary,
    Draft,
    Page,
    PublishedArticle,
    TimeWindow,
)
from services.article.events import OUTBOX_TOPICS, KafkaArticleEvents
from services.article.repository.cache import FIRST_PAGE_SIZE, FirstPageCache
from services.article.repository.dao import (
    ArticleDAO,
    ArticleOutboxRow,
    ArticleRow,
    PublishedArticleRow,
)

__all__ = ["CachedArticleRepository", "SqlUnitOfWork", "article_from_row", "article_outbox"]


def article_outbox() -> Outbox:
    """The outbox of the article service's events (``article_outbox``, declared topics only)."""
    return Outbox(ArticleOutboxRow, topics=OUTBOX_TOPICS)


_TIMES = {"ctime_ms": "ctime", "utime_ms": "utime"}

article_from_row = row_mapper(
    Article, ArticleRow, renamed=_TIMES, converted={"status": ArticleStatus}
)
"""The domain article stored in an author-store row."""
# A summary row is a ``select(*SUMMARY_COLUMNS)`` row: ArticleRow's names without content.
_summary = row_mapper(
    ArticleSummary, ArticleRow, renamed=_TIMES, converted={"status": ArticleStatus}
)
_published = row_mapper(
    PublishedArticle, PublishedArticleRow, renamed=_TIMES, given=["author_name"]
)


class CachedArticleRepository:
    """Both article stores in one session, with the authors' first pages cached."""

    def __init__(self, dao: ArticleDAO, first_pages: FirstPageCache) -> None:
        self._dao = dao
        self._first_pages = first_pages
        self._rows: dict[int, ArticleRow] = {}
        self._stale_authors: set[int] = set()

    def _track(self, row: ArticleRow) -> Article:
        self._rows[row.id] = row
        return article_from_row(row)

    async def create(
        self, author_id: int, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Insert a new author-store article."""
        row = ArticleRow(
            author_id=author_id,
            title=draft.title,
            content=draft.content,
            abstract=draft.abstract,
            status=int(status),
            ctime=now_ms,
            utime=now_ms,
        )
        await self._dao.insert(row)
        self._stale_authors.add(author_id)
        return self._track(row)

    async def get_for_update(self, article_id: int) -> Article | None:
        """The author-store article, locked for the rest of the transaction."""
        row = await self._dao.get(article_id, for_update=True)
        return self._track(row) if row is not None else None

    async def get(self, article_id: int) -> Article | None:
        """The author-store article."""
        row = await self._dao.get(article_id)
        return article_from_row(row) if row is not None else None

    async def _loaded(self, article: Article) -> ArticleRow:
        row = self._rows.get(article.id) or await self._dao.get(article.id, for_update=True)
        if row is None:
            raise LookupError(f"article {article.id} vanished inside its transaction")
        return row

    async def update(
        self, article: Article, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Replace title, content and abstract, set the status."""
        row = await self._loaded(article)
        row.title, row.content, row.abstract = draft.title, draft.content, draft.abstract
        row.status, row.utime = int(status), now_ms
        await self._dao.flush()
        self._stale_authors.add(row.author_id)
        return self._track(row)

    async def set_status(self, article: Article, status: ArticleStatus, *, now_ms: int) -> Article:
        """Set the author-store status."""
        row = await self._loaded(article)
        row.status, row.utime = int(status), now_ms
        await self._dao.flush()
        self._stale_authors.add(row.author_id)
        return self._track(row)

    async def list_by_author(self, author_id: int, page: Page) -> list[ArticleSummary]:
        """Newest first; a first-page request is answered from the cache when possible."""
        if page.offset == 0 and page.limit <= FIRST_PAGE_SIZE:
            cached = await self._first_pages.get(author_id)
            if cached is None:
                rows = await self._dao.list_by_author(author_id, 0, FIRST_PAGE_SIZE)
                cached = [_summary(row) for row in rows]
                await self._first_pages.set(author_id, cached)
            return cached[: page.limit]
        rows = await self._dao.list_by_author(author_id, page.offset, page.limit)
        return [_summary(row) for row in rows]

    async def save_published(self, article: Article) -> None:
        """Make the current version of ``article`` its published reader copy."""
        await self._dao.upsert_published(await self._loaded(article))

    async def withdraw_published(self, article_id: int, *, now_ms: int) -> bool:
        """Mark the reader copy private; ``False`` if there is none."""
        return await self._dao.set_published_status(article_id, int(ArticleStatus.PRIVATE), now_ms)

    async def get_published(self, article_id: int) -> PublishedArticle | None:
        """The published reader copy (without author name)."""
        row = await self._dao.get_published(article_id)
        return _published(row) if row is not None else None

    async def list_published(self, window: TimeWindow, page: Page) -> list[PublishedArticle]:
        """Published reader copies updated within ``window``, newest first."""
        rows = await self._dao.list_published(
            window.start_ms, window.end_ms, page.offset, page.limit
        )
        return [_published(row) for row in rows]

    async def published_ids(self, article_ids: Sequence[int]) -> set[int]:
        """Those of ``article_ids`` whose reader copy is published (one query, no content)."""
        return set(await self._dao.published_ids(article_ids))

    async def after_commit(self) -> None:
        """Drop the first pages this repository made stale (after the commit)."""
        stale, self._stale_authors = self._stale_authors, set()
        await self._first_pages.delete(sorted(stale))


class SqlUnitOfWork(CachingUnitOfWork[CachedArticleRepository, FirstPageCache]):
    """One SQL transaction with a :class:`CachedArticleRepository` bound to it, and the
    article events recorded in ``outbox`` within the same transaction."""

    articles = CachingUnitOfWork.repository

    def __init__(self, sessions: SessionFactory, cache: FirstPageCache, outbox: Outbox) -> None:
        super().__init__(sessions, cache)
        self._outbox = outbox
        self._events: KafkaArticleEvents | None = None

    def open_repository(self, session: AsyncSession) -> CachedArticleRepository:
        self._events = KafkaArticleEvents(self._outbox.bound(session))
        return CachedArticleRepository(ArticleDAO(session), self.cache)

    @property
    def events(self) -> KafkaArticleEvents:
        """Publications and withdrawals, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events
