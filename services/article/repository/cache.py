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
  process without this class.

Values are versioned JSON. No cache ever fails a request: a Redis error on read is
counted as ``result="error"`` and answered as a miss; a failed write or delete is logged and
counted in ``webook_cache_write_errors_total`` (the TTL bounds how long a copy that could
not be replaced or dropped stays stale; with the in-process cache, a failed write was not
announced either, so other replicas keep their copy at most ``max_age``, and this one
drops its own).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.invalidation import InvalidatedCache, InvalidationFeed, publish_invalidation
from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
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
_FORMAT_VERSION = 1
# Connection failures surface as redis ConnectionError/TimeoutError, sometimes as bare OSError.
_REDIS_FAILURES = (RedisError, OSError)
_DECODE_FAILURES = (ValueError, KeyError, TypeError)


def first_page_key(author_id: int) -> str:
    """The Redis key of an author's cached first page."""
    return f"{FIRST_PAGE_PREFIX}{author_id}"


def published_key(article_id: int) -> str:
    """The Redis key of a cached reader view."""
    return f"{PUBLISHED_PREFIX}{article_id}"


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps({"v": _FORMAT_VERSION, **data}, ensure_ascii=False, separators=(",", ":"))


def encode_summaries(items: Sequence[ArticleSummary]) -> str:
    """The cached JSON form of a first page."""
    return _dumps(
        {
            "items": [
                [i.id, i.author_id, i.title, i.abstract, int(i.status), i.ctime_ms, i.utime_ms]
                for i in items
            ]
        }
    )


def decode_summaries(raw: bytes | str) -> list[ArticleSummary] | None:
    """The first page in a cached value (``None`` for another format version)."""
    data = json.loads(raw)
    if data.get("v") != _FORMAT_VERSION:
        return None
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


def encode_published(article: PublishedArticle) -> str:
    """The cached JSON form of a reader view."""
    return _dumps(
        {
            "id": article.id,
            "author_id": article.author_id,
            "author_name": article.author_name,
            "title": article.title,
            "content": article.content,
            "abstract": article.abstract,
            "ctime_ms": article.ctime_ms,
            "utime_ms": article.utime_ms,
        }
    )


def decode_published(raw: bytes | str) -> PublishedArticle | None:
    """The reader view in a cached value (``None`` for another format version)."""
    data = json.loads(raw)
    if data.get("v") != _FORMAT_VERSION:
        return None
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


class _RedisCache:
    """Shared error handling: reads degrade to misses, writes are logged and counted."""

    name = ""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def _get(self, key: str) -> bytes | str | None:
        try:
            raw: bytes | str | None = await self._redis.get(key)
        except _REDIS_FAILURES as exc:
            logger.warning(
                "cache read failed; reading the database",
                extra={"cache": self.name, "error": repr(exc)},
            )
            CACHE_REQUESTS.labels(self.name, "error").inc()
            return None
        if raw is None:
            CACHE_REQUESTS.labels(self.name, "miss").inc()
        return raw

    def _undecodable(self, key: str) -> None:
        logger.warning("undecodable cache entry; reading the database", extra={"key": key})
        CACHE_REQUESTS.labels(self.name, "error").inc()

    def _found(self, hit: bool) -> None:
        CACHE_REQUESTS.labels(self.name, "hit" if hit else "miss").inc()

    async def _set(self, key: str, value: str, ttl_s: int) -> None:
        try:
            await self._redis.set(key, value, ex=ttl_s)
        except _REDIS_FAILURES as exc:
            self._write_failed("set", key, exc)

    async def _delete(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except _REDIS_FAILURES as exc:
            self._write_failed("delete", key, exc)

    def _write_failed(self, op: str, key: str, exc: BaseException) -> None:
        logger.warning(
            "cache write failed",
            extra={"cache": self.name, "op": op, "key": key, "error": repr(exc)},
        )
        CACHE_WRITE_ERRORS.labels(self.name, op).inc()


class FirstPageCache(_RedisCache):
    """The first :data:`FIRST_PAGE_SIZE` entries of each author's list."""

    name = FIRST_PAGE_CACHE

    def __init__(
        self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_FIRST_PAGE_TTL_SECONDS
    ) -> None:
        super().__init__(redis)
        self._ttl = ttl_seconds

    async def get(self, author_id: int) -> list[ArticleSummary] | None:
        """The cached first page, or ``None`` on a miss or any cache error."""
        key = first_page_key(author_id)
        raw = await self._get(key)
        if raw is None:
            return None
        try:
            items = decode_summaries(raw)
        except _DECODE_FAILURES:
            self._undecodable(key)
            return None
        self._found(items is not None)
        return items

    async def set(self, author_id: int, items: Sequence[ArticleSummary]) -> None:
        """Cache the first page; failures are logged and counted."""
        await self._set(first_page_key(author_id), encode_summaries(items), self._ttl)

    async def delete(self, author_ids: Sequence[int]) -> None:
        """Drop the first pages of ``author_ids``; failures are logged and counted."""
        for author_id in author_ids:
            await self._delete(first_page_key(author_id))


class RedisPublishedArticleCache(_RedisCache):
    """Reader views by article id (implements ``PublishedArticleCache``).

    With ``announce=True`` every set and delete is announced on :data:`PUBLISHED_CHANNEL`
    in the same transaction (what :class:`InProcessPublishedArticleCache` needs).
    """

    name = PUBLISHED_CACHE

    def __init__(self, redis: aioredis.Redis, *, announce: bool = False) -> None:
        super().__init__(redis)
        self._announce = announce

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The cached reader view, or ``None`` on a miss or any cache error."""
        key = published_key(article_id)
        raw = await self._get(key)
        if raw is None:
            return None
        try:
            article = decode_published(raw)
        except _DECODE_FAILURES:
            self._undecodable(key)
            return None
        self._found(article is not None)
        return article

    async def set(self, article: PublishedArticle, *, ttl_s: int) -> None:
        """Cache ``article`` for ``ttl_s`` seconds; failures are logged and counted."""
        key, value = published_key(article.id), encode_published(article)
        if not self._announce:
            await self._set(key, value, ttl_s)
            return
        try:
            await publish_invalidation(
                self._redis, PUBLISHED_CHANNEL, str(article.id), ("SET", key, value, "EX", ttl_s)
            )
        except _REDIS_FAILURES as exc:
            self._write_failed("set", key, exc)

    async def delete(self, article_id: int) -> None:
        """Drop the cached view; failures are logged and counted."""
        key = published_key(article_id)
        if not self._announce:
            await self._delete(key)
            return
        try:
            await publish_invalidation(
                self._redis, PUBLISHED_CHANNEL, str(article_id), ("DEL", key)
            )
        except _REDIS_FAILURES as exc:
            self._write_failed("delete", key, exc)


class InProcessPublishedArticleCache:
    """Reader views in process memory in front of Redis (implements ``PublishedArticleCache``).

    Args:
        redis: the client; the subscription takes one connection of its pool.
        max_entries: reader views kept at most (the least recently stored dropped first).
        max_age: seconds a view is kept at most.

    Call :meth:`start` inside the running loop and :meth:`aclose` at shutdown.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        max_entries: int = DEFAULT_LOCAL_ENTRIES,
        max_age: float = DEFAULT_LOCAL_MAX_AGE_SECONDS,
    ) -> None:
        self._shared = RedisPublishedArticleCache(redis, announce=True)
        local: InvalidatedCache[int, PublishedArticle] = InvalidatedCache(
            max_entries=max_entries, max_age=max_age
        )
        self.feed = InvalidationFeed(
            redis,
            PUBLISHED_CHANNEL,
            name=LOCAL_PUBLISHED_CACHE,
            on_message=lambda member: local.invalidate(int(member)),
            on_reset=local.clear,
        )
        local.attach(self.feed)
        self._local = local
        self._hits = CACHE_REQUESTS.labels(LOCAL_PUBLISHED_CACHE, "hit")
        self._misses = CACHE_REQUESTS.labels(LOCAL_PUBLISHED_CACHE, "miss")

    def start(self) -> None:
        """Subscribe to announcements (until then every read goes to Redis)."""
        self.feed.start()

    async def aclose(self) -> None:
        """Unsubscribe; reads go to Redis from now on."""
        await self.feed.aclose()

    async def get(self, article_id: int) -> PublishedArticle | None:
        """The reader view from memory, else from Redis (then kept), or ``None``."""
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

    async def set(self, article: PublishedArticle, *, ttl_s: int) -> None:
        """Store ``article`` in Redis and tell every replica to drop its copy."""
        await self._shared.set(article, ttl_s=ttl_s)
        self._local.invalidate(article.id)

    async def delete(self, article_id: int) -> None:
        """Drop the view from Redis and from every replica's memory."""
        await self._shared.delete(article_id)
        self._local.invalidate(article_id)
