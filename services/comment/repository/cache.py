"""Redis cache of the first page of comments of each business object.

One hash per object, ``webook:comment:first_page:<biz>:<biz_id>``, with one field per page
shape (``<limit>:<replies per comment>``) holding the page as versioned JSON
(:class:`kit.cache.store.RedisCache`), and a TTL (60 s by default). A write to the object
deletes the whole hash, so every shape is invalidated by one ``DEL``. The cache never fails
a request: read errors are misses; failed writes and deletes are logged and counted, never
raised (the TTL bounds how long a copy that could not be deleted stays stale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from kit.cache.store import JsonCodec, RedisCache
from services.comment.domain import Comment

CACHE_NAME = "comment_first_page"
KEY_PREFIX = "webook:comment:first_page:"
DEFAULT_TTL_SECONDS = 60


TtlSeconds = int | Callable[[], int]
"""A TTL in seconds, or what to call at each write for it (a live setting)."""


def ttl_reader(ttl_seconds: TtlSeconds) -> Callable[[], int]:
    """What gives the TTL of each write: ``ttl_seconds`` itself if callable, else a constant."""
    if callable(ttl_seconds):
        return ttl_seconds
    constant = ttl_seconds
    return lambda: constant


FORMAT_VERSION = 1


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


def encode_page(page: list[Comment]) -> dict[str, Any]:
    """The cached JSON object of a page."""
    return {"comments": [_encode_comment(c) for c in page]}


def decode_page(data: dict[str, Any]) -> list[Comment]:
    """The page in a cached JSON object (``KeyError``/``ValueError``/``TypeError`` if not)."""
    return [_decode_comment(item) for item in data["comments"]]


CODEC = JsonCodec(encode=encode_page, decode=decode_page, version=FORMAT_VERSION)
"""How a cached value is stored (bump ``FORMAT_VERSION`` when its layout changes)."""


class FirstPageCache:
    """Cache-aside store of first pages; every method swallows Redis failures."""

    def __init__(
        self, redis: aioredis.Redis, *, ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    ) -> None:
        self._ttl = ttl_reader(ttl_seconds)
        self._cache = RedisCache(redis, name=CACHE_NAME, codec=CODEC, ttl_seconds=self._ttl())

    async def get(self, biz: str, biz_id: int, shape: str) -> list[Comment] | None:
        """The cached page, or ``None`` on a miss or any failure."""
        return await self._cache.get(first_page_key(biz, biz_id), field=shape)

    async def set(self, biz: str, biz_id: int, shape: str, page: list[Comment]) -> None:
        """Store a page (the TTL is set on the hash, refreshed by each fill)."""
        await self._cache.set(
            first_page_key(biz, biz_id), page, field=shape, ttl_seconds=self._ttl(), fill=True
        )

    async def invalidate(self, biz: str, biz_id: int) -> None:
        """Drop every cached first page of ``(biz, biz_id)``."""
        await self._cache.delete([first_page_key(biz, biz_id)])
