"""Redis caches of the article service.

- :class:`FirstPageCache`: the first page of an author's list (up to
  :data:`FIRST_PAGE_SIZE` summaries, no content) under ``webook:article:first_page:<author>``.
  Lists with ``offset == 0`` and ``limit <= FIRST_PAGE_SIZE`` are cut from it; every write
  by the author drops it after the commit.
- :class:`RedisPublishedArticleCache`: reader views (content and author name included)
  under ``webook:article:published:<id>``, set on publish and on a read miss with the TTL
  the service's policy chose, dropped on withdraw.
- :class:`InProcessPublishedArticleCache`: the reader views most read lately, in this
  process's memory in front of the Redis copy, so that a hot article costs no Redis round
  trip per read. Every set or delete of a Redis copy is announced on
  :data:`PUBLISHED_CHANNEL` in the same MULTI/EXEC transaction
  (:mod:`kit.cache.invalidation`); every replica drops its copy when the announcement
  arrives (milliseconds after a publish or withdraw). On any doubt (subscription not yet
  confirmed, lost, renewed, or silent for more than a second) it is bypassed and emptied,
  and reads go to Redis as before. A copy also lives at most ``max_age`` seconds, which
  bounds what announcements cannot cover: a Redis copy that expired or was written by a
  process without this class. While Redis itself is unreachable (refusing, or known hung
  by :mod:`kit.redisx`), the copies kept are answered as stale for up to ``stale_for``
  seconds instead (counted in ``webook_cache_stale_serves_total``), and dropped when the
  subscription is back.

Values are versioned JSON. No cache ever fails a request: a Redis error on read is
counted as ``result="error"`` and answered as a miss (reads, and fills passed
``fill=True``, wait for a silent Redis no longer than a read with a fallback:
:func:`kit.redisx.fallback_reads`); a failed write or delete is logged and counted in
``webook_cache_write_errors_total`` (the TTL bounds how long a copy that could not be
replaced or dropped stays stale; with the in-process cache, a failed write was not
announced either, so other replicas keep their copy at most ``max_age``, and this one
drops its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.invalidation import (
    InvalidatedCache,
    InvalidationFeed,
    LocalTier,
    publish_invalidation,
)
from kit.cache.metrics import CACHE_REQUESTS
from kit.cache.store import Failed, JsonCodec, RedisCache
from services.article.domain import ArticleStatus, ArticleSummary, PublishedArticle

logger = logging.getLogger(__name__)

FIRST_PAGE_CACHE = "article_first_page"
PUBLISHED_CACHE = "article_published"
LOCAL_PUBLISHED_CACHE = "article_published_local"
# Where changes of cached reader views are announced to every replica.
PUBLISHED_CHANNEL = "webook:article:published:changed"
DEFAULT_LOCAL_ENTRIES = 1000
DEFAULT_LOCAL_MAX_AGE_SECONDS = 60.0
FIRST_PAGE_PREFIX = "webook:article:first_page:"
PUBLISHED_PREFIX = "webook:article:published:"
FIRST_PAGE_SIZE = 100
DEFAULT_FIRST_PAGE_TTL_SECONDS = 600


TtlSeconds = int | Callable[[], int]
"""A TTL in seconds, or what to call at each write for it (a live setting)."""


def ttl_reader(ttl_seconds: TtlSeconds) -> Callable[[], int]:
    """What gives the TTL of each write: ``ttl_seconds`` itself if callable, else a constant."""
    if callable(ttl_seconds):
        return ttl_seconds
    constant = ttl_seconds
    return lambda: constant


FORMAT_VERSION = 1
# Connection failures surface as redis ConnectionError/TimeoutError, sometimes as bare OSError.
_REDIS_FAILURES = (RedisError, OSError)


def first_page_key(author_id: int) -> str:
    """The Redis key of an author's cached first page."""
    return f"{FIRST_PAGE_PREFIX}{author_id}"


def published_key(article_id: int) -> str:
    """The Redis key of a cached reader view."""
    return f"{PUBLISHED_PREFIX}{article_id}"


def _summaries_object(items: Sequence[ArticleSummary]) -> dict[str, Any]:
    return {
        "items": [
            [i.id, i.author_id, i.title, i.abstract, int(i.status), i.ctime_ms, i.utime_ms]
            for i in items
        ]
    }


def _summaries(data: dict[str, Any]) -> list[ArticleSummary]:
    return [
        ArticleSummary(
            id=int(i),
            author_id=int(a),
            title=str(t),
            abstract=str(ab),
            status=ArticleStatus(int(s)),
            ctime_ms=int(c),
            utime_ms=int(u),
        )
        for i, a, t, ab, s, c, u in data["items"]
    ]


def _published_object(article: PublishedArticle) -> dict[str, Any]:
    return {
        "id": article.id,
        "author_id": article.author_id,
        "author_name": article.author_name,
        "title": article.title,
        "content": article.content,
        "abstract": article.abstract,
        "ctime_ms": article.ctime_ms,
        "utime_ms": article.utime_ms,
    }


def _published(data: dict[str, Any]) -> PublishedArticle:
    return PublishedArticle(
        id=int(data["id"]),
        author_id=int(data["author_id"]),
        author_name=str(data["author_name"]),
        title=str(data["title"]),
        content=str(data["content"]),
        abstract=str(data["abstract"]),
        ctime_ms=int(data["ctime_ms"]),
        utime_ms=int(data["utime_ms"]),
    )


# How first pages and reader views are stored (bump FORMAT_VERSION when a layout changes).
SUMMARIES_CODEC = JsonCodec(encode=_summaries_object, decode=_summaries, version=FORMAT_VERSION)
PUBLISHED_CODEC = JsonCodec(encode=_published_object, decode=_published, version=FORMAT_VERSION)


def encode_published(article: PublishedArticle) -> str:
    """The cached JSON form of a reader view."""
    return PUBLISHED_CODEC.dumps(article)


class FirstPageCache:
    """The first :data:`FIRST_PAGE_SIZE` entries of each author's list."""

    def __init__(
        self, redis: aioredis.Redis, *, ttl_seconds: TtlSeconds = DEFAULT_FIRST_PAGE_TTL_SECONDS
    ) -> None:
        self._ttl = ttl_reader(ttl_seconds)
        self._cache = RedisCache(
            redis, name=FIRST_PAGE_CACHE, codec=SUMMARIES_CODEC, ttl_seconds=self._ttl()
        )

    async def get(self, author_id: int) -> list[ArticleSummary] | None:
        """The cached first page, or ``None`` on a miss or any cache error."""
        return await self._cache.get(first_page_key(author_id))

    async def set(self, author_id: int, items: Sequence[ArticleSummary]) -> None:
        """Cache the first page just read from the database (a fill: it waits no longer
        than a read); failures are logged and counted."""
        await self._cache.set(
            first_page_key(author_id), list(items), ttl_seconds=self._ttl(), fill=True
        )

    async def delete(self, author_ids: Sequence[int]) -> None:
        """Drop the first pages of ``author_ids``; failures are logged and counted."""
        await self._cache.delete(first_page_key(author_id) for author_id in author_ids)


class RedisPublishedArticleCache:
    """Reader views by article id (implements ``PublishedArticleCache``).

    With ``announce=True`` every set and delete is announced on :data:`PUBLISHED_CHANNEL`
    in the same transaction (what :class:`InProcessPublishedArticleCache` needs).
    """

    def __init__(self, redis: aioredis.Redis, *, announce: bool = False) -> None:
        # Every write gives its TTL (the service's policy); this default is never used.
        self._cache = RedisCache(redis, name=PUBLISHED_CACHE, codec=PUBLISHED_CODEC, ttl_seconds=0)
        self._announce = announce

    async def lookup(self, article_id: int) -> PublishedArticle | Failed | None:
        """The cached reader view, ``None`` on a miss, :data:`~kit.cache.store.FAILED` when
        Redis failed (a caller holding an older copy may prefer it then)."""
        return await self._cache.lookup(published_key(article_id))

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The cached reader view, or ``None`` on a miss or any cache error."""
        return await self._cache.get(published_key(article_id))

    async def set(self, article: PublishedArticle, *, ttl_s: int, fill: bool = False) -> None:
        """Cache ``article`` for ``ttl_s`` seconds; failures are logged and counted.
        ``fill``: a view just read from the database on a read miss (it then waits no
        longer than a read, :meth:`kit.cache.store.CacheGuard.fill`)."""
        key = published_key(article.id)
        if not self._announce:
            await self._cache.set(key, article, ttl_seconds=ttl_s, fill=fill)
            return
        command = ("SET", key, PUBLISHED_CODEC.dumps(article), "EX", ttl_s)
        guard = self._cache.guard
        await (guard.fill if fill else guard.write)(
            "set",
            publish_invalidation(self._cache.redis, PUBLISHED_CHANNEL, str(article.id), command),
            key=key,
        )

    async def delete(self, article_id: int) -> None:
        """Drop the cached view; failures are logged and counted."""
        key = published_key(article_id)
        if not self._announce:
            await self._cache.delete([key])
            return
        await self._cache.guard.write(
            "delete",
            publish_invalidation(
                self._cache.redis, PUBLISHED_CHANNEL, str(article_id), ("DEL", key)
            ),
            key=key,
        )


class InProcessPublishedArticleCache(LocalTier):
    """Reader views in process memory in front of Redis (implements ``PublishedArticleCache``).

    Args:
        redis: the client; the subscription takes one connection of its pool.
        max_entries: reader views kept at most (the least recently stored dropped first).
        max_age: seconds a view is kept at most.
        stale_for: while Redis is unreachable, the views kept are still answered (counted
            as stale) for this many seconds after the subscription last vouched for them
            (0, the default here: never; the service's settings default to 300 s); the
            subscription back drops them all.

    Call :meth:`start` inside the running loop and :meth:`aclose` at shutdown.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        max_entries: int = DEFAULT_LOCAL_ENTRIES,
        max_age: float = DEFAULT_LOCAL_MAX_AGE_SECONDS,
        stale_for: float = 0.0,
    ) -> None:
        self._shared = RedisPublishedArticleCache(redis, announce=True)
        local: InvalidatedCache[int, PublishedArticle] = InvalidatedCache(
            max_entries=max_entries,
            max_age=max_age,
            stale_for=stale_for,
            name=LOCAL_PUBLISHED_CACHE,
        )
        feed = InvalidationFeed(
            redis,
            PUBLISHED_CHANNEL,
            name=LOCAL_PUBLISHED_CACHE,
            on_message=lambda member: local.invalidate(int(member)),
            on_reset=local.clear,
            on_lost=local.lost,
        )
        super().__init__(feed, local)
        self._local = local
        self._hits = CACHE_REQUESTS.labels(LOCAL_PUBLISHED_CACHE, "hit")
        self._misses = CACHE_REQUESTS.labels(LOCAL_PUBLISHED_CACHE, "miss")

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The reader view from memory, else from Redis (then kept), else the stale copy
        if Redis just failed (see ``stale_for``), or ``None``."""
        local = self._local
        article = local.get(article_id)
        if article is not None:
            self._hits.inc()
            return article
        self._misses.inc()
        ticket = local.ticket()
        article = await self._shared.get(article_id)
        if article is not None:
            local.put(article_id, article, ticket)
            return article
        # A miss, or Redis failed: if that failure showed Redis down, the copy kept here
        # (valid when the feed last vouched for it) beats a read from the database.
        return local.get(article_id)

    async def set(self, article: PublishedArticle, *, ttl_s: int, fill: bool = False) -> None:
        """Store ``article`` in Redis and tell every replica to drop its copy (``fill``: as
        for :meth:`RedisPublishedArticleCache.set`)."""
        await self._shared.set(article, ttl_s=ttl_s, fill=fill)
        self._local.invalidate(article.id)

    async def delete(self, article_id: int) -> None:
        """Drop the view from Redis and from every replica's memory."""
        await self._shared.delete(article_id)
        self._local.invalidate(article_id)
