"""Redis cache of the first page of comments of each business object.

One hash per object, ``webook:comment:first_page:<biz>:<biz_id>``, with one field per page
shape (``<limit>:<replies per comment>``) holding the page as JSON, and a TTL (60 s by
default). A write to the object deletes the whole hash, so every shape is invalidated by one
``DEL``. The cache never fails a request: read errors count as ``result="error"`` and are
answered as misses; failed writes and deletes are logged and counted, never raised (the TTL
bounds how long a copy that could not be deleted stays stale).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from services.comment.domain import Comment

logger = logging.getLogger(__name__)

CACHE_NAME = "comment_first_page"
KEY_PREFIX = "webook:comment:first_page:"
DEFAULT_TTL_SECONDS = 60
_FORMAT_VERSION = 1
_REDIS_FAILURES = (RedisError, OSError)


def first_page_key(biz: str, biz_id: int) -> str:
    """The Redis key of ``(biz, biz_id)``'s cached first pages."""
    return f"{KEY_PREFIX}{biz}:{biz_id}"


def _encode_comment(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "uid": comment.uid,
        "biz": comment.biz,
        "biz_id": comment.biz_id,
        "content": comment.content,
        "root_id": comment.root_id,
        "parent_id": comment.parent_id,
        "reply_cnt": comment.reply_cnt,
        "ctime_ms": comment.ctime_ms,
        "replies": [_encode_comment(reply) for reply in comment.replies],
    }


def _decode_comment(data: dict[str, Any]) -> Comment:
    return Comment(
        id=int(data["id"]),
        uid=int(data["uid"]),
        biz=str(data["biz"]),
        biz_id=int(data["biz_id"]),
        content=str(data["content"]),
        root_id=int(data["root_id"]),
        parent_id=int(data["parent_id"]),
        reply_cnt=int(data["reply_cnt"]),
        ctime_ms=int(data["ctime_ms"]),
        replies=tuple(_decode_comment(reply) for reply in data["replies"]),
    )


def encode_page(page: list[Comment]) -> str:
    """The cached JSON form of a page."""
    return json.dumps(
        {"v": _FORMAT_VERSION, "comments": [_encode_comment(c) for c in page]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_page(raw: bytes | str) -> list[Comment] | None:
    """The page in a cached value, ``None`` for another format version.

    Raises ``ValueError``/``KeyError``/``TypeError`` for values that are not a cached page.
    """
    data: dict[str, Any] = json.loads(raw)
    if data.get("v") != _FORMAT_VERSION:
        return None
    return [_decode_comment(item) for item in data["comments"]]


class FirstPageCache:
    """Cache-aside store of first pages; every method swallows Redis failures."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def get(self, biz: str, biz_id: int, shape: str) -> list[Comment] | None:
        """The cached page, or ``None`` on a miss or any failure."""
        try:
            raw = await self._redis.hget(first_page_key(biz, biz_id), shape)
        except _REDIS_FAILURES:
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            logger.warning("comment cache read failed", exc_info=True)
            return None
        if raw is None:
            CACHE_REQUESTS.labels(CACHE_NAME, "miss").inc()
            return None
        try:
            page = decode_page(raw)
        except (ValueError, KeyError, TypeError):
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            logger.warning("undecodable comment cache entry", extra={"biz": biz, "biz_id": biz_id})
            return None
        CACHE_REQUESTS.labels(CACHE_NAME, "hit" if page is not None else "miss").inc()
        return page

    async def set(self, biz: str, biz_id: int, shape: str, page: list[Comment]) -> None:
        """Store a page (the TTL is set on the hash, refreshed by each fill)."""
        key = first_page_key(biz, biz_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, shape, encode_page(page))
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except _REDIS_FAILURES:
            CACHE_WRITE_ERRORS.labels(CACHE_NAME, "set").inc()
            logger.warning("comment cache write failed", exc_info=True)

    async def invalidate(self, biz: str, biz_id: int) -> None:
        """Drop every cached first page of ``(biz, biz_id)``."""
        try:
            await self._redis.delete(first_page_key(biz, biz_id))
        except _REDIS_FAILURES:
            CACHE_WRITE_ERRORS.labels(CACHE_NAME, "delete").inc()
            logger.warning("comment cache invalidation failed", exc_info=True)
