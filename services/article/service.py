"""Use cases of the article service and the ports they need.

:class:`ArticleService` validates input (:mod:`services.article.domain`), enforces that only
an article's author may change or see its drafts, and runs every write in one
:class:`UnitOfWork` (one SQL transaction). After a successful commit it updates the
published-article cache and emits events; neither may fail a request that already committed.

What happens when a step fails:

- **Publish** looks up the author's name first (no remote call inside the transaction), then
  writes the author store, the reader store and the ``ArticlePublished`` event (its outbox
  row, :mod:`kit.outbox`) in one transaction: all or nothing, so a crash after the commit
  loses no event and consumers such as search follow at least once. Then it re-caches the
  reader copy (a failed cache write is logged, and the stale copy lives at most its TTL).
- **Withdraw** updates both stores and records ``ArticleWithdrawn`` in one transaction, then
  drops the cached reader copy; a withdrawn article cannot stay searchable for want of an
  event.
- **Reads** emit ``ArticleRead`` without waiting for the broker; the producer buffers and
  retries, and counts what it drops.
- **Existence checks** (:meth:`ArticleService.published_exists`, asked by the interactive
  and comment services before a like, collect or comment) count no read and fill no cache:
  an article whose reader view is cached is published (withdrawing drops the copy after
  the commit); the others are asked of SQL in one query on the reader store's key.

The published-article cache holds the reader view *with its author's name*, so filling it
needs the user service: that is why this layer, not the repository, fills it. A copy is
cached only when the name lookup worked, so a user-service outage never pins an empty name
in the cache; the read itself is then served with an empty name. How long a copy lives
comes from an injected :data:`~services.article.domain.PublishedTtlPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from services.article.domain import (
    Article,
    ArticleStatus,
    ArticleSummary,
    Draft,
    Page,
    Popularity,
    PublishedArticle,
    PublishedTtlPolicy,
    TimeWindow,
    check_author,
    exists_ids,
    make_draft,
    make_page,
    make_window,
)
from services.article.errors import ArticleNotFound, ArticlePermissionDenied, Reason

logger = logging.getLogger(__name__)

# Content shorter than this (about 0.2 ms of sanitising) is cleaned on the event loop.
_INLINE_SANITIZE_CHARS = 20_000


class ArticleRepository(Protocol):
    """Both stores, as seen from inside one unit of work."""

    async def create(
        self, author_id: int, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Insert a new article into the author store."""
        ...

    async def get_for_update(self, article_id: int) -> Article | None:
        """The author-store article, locked until the unit of work ends, or ``None``."""
        ...

    async def get(self, article_id: int) -> Article | None:
        """The author-store article, or ``None``."""
        ...

    async def update(
        self, article: Article, draft: Draft, status: ArticleStatus, *, now_ms: int
    ) -> Article:
        """Replace title and content of ``article`` and set its status."""
        ...

    async def set_status(self, article: Article, status: ArticleStatus, *, now_ms: int) -> Article:
        """Set the author-store status of ``article``."""
        ...

    async def list_by_author(self, author_id: int, page: Page) -> list[ArticleSummary]:
        """The author's articles, newest update first (the first page is cached)."""
        ...

    async def save_published(self, article: Article) -> None:
        """Make ``article`` the reader copy (insert or replace), status published."""
        ...

    async def withdraw_published(self, article_id: int, *, now_ms: int) -> bool:
        """Hide the reader copy; ``False`` if the article was never published."""
        ...

    async def get_published(self, article_id: int) -> PublishedArticle | None:
        """The reader copy if it is published (without author name), or ``None``."""
        ...

    async def list_published(self, window: TimeWindow, page: Page) -> list[PublishedArticle]:
        """Published reader copies updated within ``window``, newest first."""
        ...

    async def published_ids(self, article_ids: Sequence[int]) -> set[int]:
        """Those of ``article_ids`` whose reader copy is published (one query)."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction: ``async with`` it, use :attr:`articles`, then :meth:`commit`.

    Leaving the block without committing rolls back; cached lists the transaction made
    stale are dropped inside :meth:`commit`, after the database commit.
    """

    @property
    def articles(self) -> ArticleRepository:
        """The repository bound to this unit of work's transaction."""
        ...

    @property
    def events(self) -> ArticleChangeEvents:
        """Events recorded in this unit of work's transaction (kept only if it commits)."""
        ...


class PublishedArticleCache(Protocol):
    """Cached reader views by article id; never raises (errors are misses, writes logged)."""

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The cached reader view, or ``None``."""
        ...

    async def set(self, article: PublishedArticle, *, ttl_s: int, fill: bool = False) -> None:
        """Cache ``article`` for ``ttl_s`` seconds (``fill``: just read on a miss, so it
        waits on Redis no longer than a read)."""
        ...

    async def delete(self, article_id: int) -> None:
        """Drop the cached view of ``article_id``."""
        ...


class AuthorDirectoryUnavailable(Exception):
    """The directory of author names could not answer."""


class AuthorDirectory(Protocol):
    """Display names of users (the user service)."""

    async def names(self, user_ids: Sequence[int]) -> dict[int, str]:
        """Names of the users among ``user_ids`` that exist.

        Raises :class:`AuthorDirectoryUnavailable` when the directory cannot be reached.
        """
        ...


class PopularityLookup(Protocol):
    """How popular an article and its author are; answers zeros rather than failing."""

    async def popularity(self, author_id: int, article_id: int) -> Popularity:
        """Followers of ``author_id`` and reads of ``article_id`` (zeros if unknown)."""
        ...


class ArticleReadEvents(Protocol):
    """Where the service reports reads; calls never block or raise (loss-tolerant)."""

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """A reader (0: anonymous) opened a published article."""
        ...


class ArticleChangeEvents(Protocol):
    """Changes readers see, recorded in the unit of work's transaction (the outbox)."""

    def article_published(self, article: PublishedArticle, *, at_ms: int) -> None:
        """A version of an article became visible to readers."""
        ...

    def article_withdrawn(self, article_id: int, author_id: int, *, at_ms: int) -> None:
        """An article stopped being visible to readers."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


async def _draft(title: str, content: str, *, publishing: bool) -> Draft:
    if len(content) < _INLINE_SANITIZE_CHARS:
        return make_draft(title, content, publishing=publishing)
    # Sanitising a long article takes milliseconds (25 ms at the size limit); nh3 releases
    # the GIL, so a worker thread keeps the event loop serving meanwhile.
    return await asyncio.to_thread(make_draft, title, content, publishing=publishing)


def _not_found(article_id: int) -> ArticleNotFound:
    return ArticleNotFound(Reason.NOT_FOUND, "article not found", metadata={"id": str(article_id)})


def _not_author(article_id: int) -> ArticlePermissionDenied:
    return ArticlePermissionDenied(
        Reason.NOT_AUTHOR,
        "only the author may change or read this article",
        metadata={"id": str(article_id)},
    )


def _owned(article: Article | None, article_id: int, author_id: int) -> Article:
    if article is None:
        raise _not_found(article_id)
    if article.author_id != author_id:
        raise _not_author(article_id)
    return article


class ArticleService:
    """The article service's use cases.

    Args:
        units: makes a new :class:`UnitOfWork` per use case.
        published_cache: cache of reader views.
        authors: display names for reader views.
        popularity: input of the cache TTL policy.
        ttl_policy: seconds a reader view stays cached.
        events: where reads are reported (publications and withdrawals are recorded in
            the unit of work: :attr:`UnitOfWork.events`).
        clock: current time in UTC.
    """

    def __init__(
        self,
        units: UnitOfWorkFactory,
        *,
        published_cache: PublishedArticleCache,
        authors: AuthorDirectory,
        popularity: PopularityLookup,
        ttl_policy: PublishedTtlPolicy,
        events: ArticleReadEvents,
        clock: Clock = utc_now,
    ) -> None:
        self._units = units
        self._cache = published_cache
        self._authors = authors
        self._popularity = popularity
        self._ttl_policy = ttl_policy
        self._events = events
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    async def save(self, author_id: int, article_id: int, title: str, content: str) -> int:
        """Create (``article_id`` 0) or update a draft; returns the article id.

        The author store's status becomes unpublished; readers keep seeing the last
        published version until the author publishes again.
        """
        check_author(author_id)
        draft = await _draft(title, content, publishing=False)
        async with self._units() as uow:
            article = await self._write(
                uow, author_id, article_id, draft, ArticleStatus.UNPUBLISHED
            )
            await uow.commit()
        logger.info("article saved", extra={"article_id": article.id, "author_id": author_id})
        return article.id

    async def publish(self, author_id: int, article_id: int, title: str, content: str) -> int:
        """Save and make the article visible to readers, in one transaction; returns its id."""
        check_author(author_id)
        draft = await _draft(title, content, publishing=True)
        names = await self._names([author_id])
        now_ms = self._now_ms()
        async with self._units() as uow:
            article = await self._write(uow, author_id, article_id, draft, ArticleStatus.PUBLISHED)
            await uow.articles.save_published(article)
            published = PublishedArticle.of(article)
            if names is not None:
                published = published.with_author_name(names.get(author_id, ""))
            uow.events.article_published(published, at_ms=now_ms)
            await uow.commit()
        await self._cache_view(published, named=names is not None)
        logger.info("article published", extra={"article_id": article.id, "author_id": author_id})
        return article.id

    async def _write(
        self,
        uow: UnitOfWork,
        author_id: int,
        article_id: int,
        draft: Draft,
        status: ArticleStatus,
    ) -> Article:
        now_ms = self._now_ms()
        if article_id == 0:
            return await uow.articles.create(author_id, draft, status, now_ms=now_ms)
        if article_id < 0:
            raise _not_found(article_id)
        existing = _owned(await uow.articles.get_for_update(article_id), article_id, author_id)
        return await uow.articles.update(existing, draft, status, now_ms=now_ms)

    async def withdraw(self, author_id: int, article_id: int) -> None:
        """Make the article private: readers no longer see it. Repeating it is harmless."""
        check_author(author_id)
        if article_id <= 0:
            raise _not_found(article_id)
        now_ms = self._now_ms()
        async with self._units() as uow:
            existing = _owned(await uow.articles.get_for_update(article_id), article_id, author_id)
            await uow.articles.set_status(existing, ArticleStatus.PRIVATE, now_ms=now_ms)
            if await uow.articles.withdraw_published(article_id, now_ms=now_ms):
                uow.events.article_withdrawn(article_id, author_id, at_ms=now_ms)
            await uow.commit()
        await self._cache.delete(article_id)
        logger.info("article withdrawn", extra={"article_id": article_id, "author_id": author_id})

    async def list_by_author(self, author_id: int, offset: int, limit: int) -> list[ArticleSummary]:
        """The author's own articles, newest update first."""
        check_author(author_id)
        page = make_page(offset, limit)
        async with self._units() as uow:
            return await uow.articles.list_by_author(author_id, page)

    async def get_by_id(self, author_id: int, article_id: int) -> Article:
        """The author's view of one of their articles (drafts included)."""
        check_author(author_id)
        if article_id <= 0:
            raise _not_found(article_id)
        async with self._units() as uow:
            return _owned(await uow.articles.get(article_id), article_id, author_id)

    async def get_published(self, article_id: int, reader_id: int) -> PublishedArticle:
        """The reader view of a published article; counts as a read by ``reader_id``."""
        if article_id <= 0:
            raise _not_found(article_id)
        article = await self._cache.get(article_id)
        if article is None:
            async with self._units() as uow:
                stored = await uow.articles.get_published(article_id)
            if stored is None:
                raise _not_found(article_id)
            article = await self._enrich_and_cache(stored, fill=True)
        self._events.article_read(article_id, max(reader_id, 0), at_ms=self._now_ms())
        return article

    async def published_exists(self, article_ids: Iterable[int]) -> set[int]:
        """Those of ``article_ids`` (at most 100 distinct positive ones; others are never
        published) that readers can open now. Counts no read.

        A cached reader view answers for its article (the cache drops it when the article
        is withdrawn, so it is as fresh as what readers see); the rest are one SQL query.
        """
        wanted = exists_ids(article_ids)
        if not wanted:
            return set()
        cached = await asyncio.gather(*(self._cache.get(article_id) for article_id in wanted))
        found = {article.id for article in cached if article is not None}
        missing = [article_id for article_id in wanted if article_id not in found]
        if missing:
            async with self._units() as uow:
                found |= await uow.articles.published_ids(missing)
        return found

    async def published_author(self, article_id: int) -> tuple[int, str]:
        """The author and title of a published article (``ARTICLE_NOT_FOUND`` unless
        published now), from the reader copy's cache where it is; counts no read."""
        if article_id <= 0:
            raise _not_found(article_id)
        article = await self._cache.get(article_id)
        if article is None:
            async with self._units() as uow:
                article = await uow.articles.get_published(article_id)
            if article is None:
                raise _not_found(article_id)
        return article.author_id, article.title

    async def list_published(
        self, start_ms: int, end_ms: int, offset: int, limit: int
    ) -> list[PublishedArticle]:
        """Published articles updated in ``[start_ms, end_ms)``, newest first, with names."""
        window = make_window(start_ms, end_ms)
        page = make_page(offset, limit)
        async with self._units() as uow:
            articles = await uow.articles.list_published(window, page)
        names = await self._names(sorted({a.author_id for a in articles}))
        if names is None:
            return articles
        return [a.with_author_name(names.get(a.author_id, "")) for a in articles]

    async def _names(self, author_ids: Sequence[int]) -> dict[int, str] | None:
        if not author_ids:
            return {}
        try:
            return await self._authors.names(author_ids)
        except AuthorDirectoryUnavailable as exc:
            logger.warning("author names unavailable; serving without", extra={"error": str(exc)})
            return None

    async def _enrich_and_cache(
        self, article: PublishedArticle, *, fill: bool = False
    ) -> PublishedArticle:
        names, popularity = await asyncio.gather(
            self._names([article.author_id]),
            self._popularity.popularity(article.author_id, article.id),
        )
        if names is None:
            # Do not cache a view without its author's name: the next read tries again.
            await self._cache.delete(article.id)
            return article
        enriched = article.with_author_name(names.get(article.author_id, ""))
        await self._cache.set(enriched, ttl_s=self._ttl_policy(enriched, popularity), fill=fill)
        return enriched

    async def _cache_view(self, article: PublishedArticle, *, named: bool) -> None:
        """Cache the reader view just published (``named``: its author name is known)."""
        if not named:
            await self._cache.delete(article.id)
            return
        popularity = await self._popularity.popularity(article.author_id, article.id)
        await self._cache.set(article, ttl_s=self._ttl_policy(article, popularity))
