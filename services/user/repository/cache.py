"""Redis cache of user profiles (cache-aside, read by id).

Each profile is one versioned JSON string under ``webook:user:profile:<id>`` with a TTL (15
minutes by default), kept by :class:`kit.cache.store.RedisCache`: a Redis error on read is a
miss (the caller reads the database), a failed write or invalidation is logged and counted
in ``webook_cache_write_errors_total`` and swallowed (the TTL bounds how long a copy that
could not be deleted stays stale). Reads, and the fills that follow a miss, wait for a
silent Redis no longer than a read with a fallback (:func:`kit.redisx.fallback_reads`);
invalidations keep the client's full timeout.

Password hashes are never cached: :class:`~services.user.domain.User` does not carry one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

import redis.asyncio as aioredis

from kit.cache.store import JsonCodec, RedisCache
from services.user.domain import User, WechatInfo

CACHE_NAME = "user_profile"
KEY_PREFIX = "webook:user:profile:"
DEFAULT_TTL_SECONDS = 900
# Bumped when the JSON layout changes, so old entries read as misses instead of errors.
FORMAT_VERSION = 1


TtlSeconds = int | Callable[[], int]
"""A TTL in seconds, or what to call at each write for it (a live setting)."""


def ttl_reader(ttl_seconds: TtlSeconds) -> Callable[[], int]:
    """What gives the TTL of each write: ``ttl_seconds`` itself if callable, else a constant."""
    if callable(ttl_seconds):
        return ttl_seconds
    constant = ttl_seconds
    return lambda: constant


def profile_key(user_id: int) -> str:
    """The Redis key of ``user_id``'s cached profile."""
    return f"{KEY_PREFIX}{user_id}"


def encode_user(user: User) -> dict[str, Any]:
    """The cached JSON object of ``user``."""
    return {
        "id": user.id,
        "email": user.email,
        "phone": user.phone,
        "nickname": user.nickname,
        "birthday": user.birthday.isoformat() if user.birthday else None,
        "about_me": user.about_me,
        "wechat_open_id": user.wechat.open_id if user.wechat else None,
        "wechat_union_id": user.wechat.union_id if user.wechat else None,
        "ctime_ms": user.ctime_ms,
        "utime_ms": user.utime_ms,
    }


def decode_user(data: dict[str, Any]) -> User:
    """The user in a cached JSON object (``KeyError``/``ValueError``/``TypeError`` if not)."""
    open_id = data["wechat_open_id"]
    return User(
        id=int(data["id"]),
        email=data["email"],
        phone=data["phone"],
        nickname=data["nickname"],
        birthday=date.fromisoformat(data["birthday"]) if data["birthday"] else None,
        about_me=data["about_me"],
        wechat=WechatInfo(open_id, data["wechat_union_id"] or "") if open_id else None,
        ctime_ms=int(data["ctime_ms"]),
        utime_ms=int(data["utime_ms"]),
    )


CODEC = JsonCodec(encode=encode_user, decode=decode_user, version=FORMAT_VERSION)
"""How a cached value is stored (bump ``FORMAT_VERSION`` when its layout changes)."""


class UserProfileCache:
    """Cache-aside store of profiles by id; every method tolerates Redis being down."""

    def __init__(
        self, redis: aioredis.Redis, *, ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    ) -> None:
        self._ttl = ttl_reader(ttl_seconds)
        self._cache = RedisCache(redis, name=CACHE_NAME, codec=CODEC, ttl_seconds=self._ttl())

    async def get(self, user_id: int) -> User | None:
        """The cached profile, or ``None`` on a miss or any cache error."""
        return await self._cache.get(profile_key(user_id))

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, User]:
        """The cached profiles among ``user_ids`` (one MGET); misses and errors are absent."""
        values = await self._cache.get_many([profile_key(i) for i in user_ids])
        return {i: user for i, user in zip(user_ids, values, strict=True) if user is not None}

    async def set(self, user: User) -> None:
        """Cache ``user`` with the TTL; failures are logged and counted, not raised."""
        await self.set_many([user])

    async def set_many(self, users: Iterable[User]) -> None:
        """Cache each of ``users`` (just read from the database) with the TTL in one round
        trip; failures are not raised."""
        await self._cache.set_many(
            ((profile_key(user.id), user) for user in users), ttl_seconds=self._ttl(), fill=True
        )

    async def delete(self, user_ids: Iterable[int]) -> None:
        """Drop the cached profiles of ``user_ids``; failures are logged and counted."""
        await self._cache.delete(profile_key(i) for i in user_ids)
