"""Redis cache of user profiles (cache-aside, read by id).

Each profile is one JSON string under ``webook:user:profile:<id>`` with a TTL (15 minutes by
default). The cache never fails a request: a Redis error on read is counted as
``result="error"`` and answered as a miss, so the caller reads the database; a failed write or
invalidation is logged and counted in ``webook_cache_write_errors_total`` and swallowed (the
TTL bounds how long a copy that could not be deleted stays stale).

Password hashes are never cached: :class:`~services.user.domain.User` does not carry one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.cache.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS
from services.user.domain import User, WechatInfo

logger = logging.getLogger(__name__)

CACHE_NAME = "user_profile"
KEY_PREFIX = "webook:user:profile:"
DEFAULT_TTL_SECONDS = 900
# Bumped when the JSON layout changes, so old entries read as misses instead of errors.
_FORMAT_VERSION = 1
# Connection failures surface as redis ConnectionError/TimeoutError, sometimes as bare OSError.
_REDIS_FAILURES = (RedisError, OSError)


def profile_key(user_id: int) -> str:
    """The Redis key of ``user_id``'s cached profile."""
    return f"{KEY_PREFIX}{user_id}"


def encode_user(user: User) -> str:
    """The cached JSON form of ``user``."""
    return json.dumps(
        {
            "v": _FORMAT_VERSION,
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
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_user(raw: bytes | str) -> User | None:
    """The user in a cached value, or ``None`` if it has another format version.

    Raises ``ValueError``/``KeyError``/``TypeError`` for values that are not a cached user.
    """
    data: dict[str, Any] = json.loads(raw)
    if data.get("v") != _FORMAT_VERSION:
        return None
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


class UserProfileCache:
    """Cache-aside store of profiles by id; every method tolerates Redis being down."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    def _decode(self, user_id: int, raw: bytes | str | None) -> User | None:
        if raw is None:
            CACHE_REQUESTS.labels(CACHE_NAME, "miss").inc()
            return None
        try:
            user = decode_user(raw)
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "undecodable cached profile; reading the database", extra={"user_id": user_id}
            )
            CACHE_REQUESTS.labels(CACHE_NAME, "error").inc()
            return None
        CACHE_REQUESTS.labels(CACHE_NAME, "hit" if user is not None else "miss").inc()
        return user

    async def get(self, user_id: int) -> User | None:
        """The cached profile, or ``None`` on a miss or any cache error."""
        try:
            raw = await self._redis.get(profile_key(user_id))
        except _REDIS_FAILURES as exc:
            self._read_failed(exc, 1)
            return None
        return self._decode(user_id, raw)

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, User]:
        """The cached profiles among ``user_ids`` (one MGET); misses and errors are absent."""
        if not user_ids:
            return {}
        try:
            values = await self._redis.mget([profile_key(i) for i in user_ids])
        except _REDIS_FAILURES as exc:
            self._read_failed(exc, len(user_ids))
            return {}
        found: dict[int, User] = {}
        for user_id, raw in zip(user_ids, values, strict=True):
            user = self._decode(user_id, raw)
            if user is not None:
                found[user_id] = user
        return found

    async def set(self, user: User) -> None:
        """Cache ``user`` with the TTL; failures are logged and counted, not raised."""
        await self.set_many([user])

    async def set_many(self, users: Iterable[User]) -> None:
        """Cache each of ``users`` with the TTL in one round trip; failures are not raised."""
        batch = list(users)
        if not batch:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user in batch:
                    pipe.set(profile_key(user.id), encode_user(user), ex=self._ttl)
                await pipe.execute()
        except _REDIS_FAILURES as exc:
            self._write_failed("set", exc, [u.id for u in batch])

    async def delete(self, user_ids: Iterable[int]) -> None:
        """Drop the cached profiles of ``user_ids``; failures are logged and counted."""
        ids = list(user_ids)
        if not ids:
            return
        try:
            await self._redis.delete(*(profile_key(i) for i in ids))
        except _REDIS_FAILURES as exc:
            self._write_failed("delete", exc, ids)

    @staticmethod
    def _read_failed(exc: BaseException, count: int) -> None:
        logger.warning(
            "profile cache read failed; reading the database",
            extra={"cache": CACHE_NAME, "error": repr(exc)},
        )
        CACHE_REQUESTS.labels(CACHE_NAME, "error").inc(count)

    @staticmethod
    def _write_failed(op: str, exc: BaseException, user_ids: list[int]) -> None:
        logger.warning(
            "profile cache write failed",
            extra={"cache": CACHE_NAME, "op": op, "user_ids": user_ids, "error": repr(exc)},
        )
        CACHE_WRITE_ERRORS.labels(CACHE_NAME, op).inc()
