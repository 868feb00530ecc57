"""Use cases of the follow service and the ports they need.

:class:`FollowService` validates ids with :mod:`services.follow.domain` and works through a
:class:`UnitOfWork`: a follow or cancel is one transaction in which the repository changes
the relation and, only if its state really changed, both users' counts. A follow that
changed the relation (a first follow, or one taken up again after a cancel) also records
``UserFollowed`` through :class:`FollowEvents`, in the same transaction, so the event exists
if and only if the follow committed; a repeated follow records nothing. Follow and cancel
are idempotent. A transaction aborted by a deadlock or lock timeout
(:class:`kit.sql.WriteConflict`) is retried a few times with a jittered back-off
(:func:`kit.sql.transact`) before answering ``FOLLOW_CONCURRENT_CONFLICT``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import WriteConflict as WriteConflict
from kit.sql import transact
from services.follow.domain import (
    FollowRelation,
    FollowStats,
    RelationStatus,
    check_pair,
    check_uid,
    page,
)
from services.follow.errors import FollowUnavailable, Reason

_WRITE_ATTEMPTS = 8


class FollowRepository(Protocol):
    """Relations and counts, inside one unit of work."""

    async def follow(self, follower: int, followee: int, *, now_ms: int) -> bool:
        """Make the relation active; whether it changed (and the counts moved)."""
        ...

    async def cancel(self, follower: int, followee: int, *, now_ms: int) -> bool:
        """Make the relation inactive; whether it changed (and the counts moved)."""
        ...

    async def followees(self, follower: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """Whom ``follower`` follows, newest first."""
        ...

    async def followers(self, followee: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """Who follows ``followee``, newest first."""
        ...

    async def is_following(self, follower: int, followee: int) -> bool:
        """Whether the relation is active."""
        ...

    async def stats(self, uid: int) -> FollowStats:
        """``uid``'s counts (cache first)."""
        ...


class FollowEvents(Protocol):
    """The events of a transaction, recorded with it (the outbox)."""

    def user_followed(self, follower: int, followee: int, *, at_ms: int) -> None:
        """``follower`` started following ``followee``."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def follows(self) -> FollowRepository:
        """The repository bound to this transaction."""
        ...

    @property
    def events(self) -> FollowEvents:
        """The events recorded in this transaction."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> FollowUnavailable:
    return FollowUnavailable(Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry")


class FollowService:
    """The follow use cases."""

    def __init__(self, unit_of_work: Callable[[], UnitOfWork]) -> None:
        self._uow = unit_of_work

    async def _write(self, change: Callable[[UnitOfWork], Awaitable[bool]]) -> bool:
        return await transact(
            self._uow, change, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def follow(self, follower: int, followee: int) -> bool:
        """``follower`` follows ``followee`` (idempotent); whether anything changed."""
        check_pair(follower, followee)
        now = _now_ms()

        async def follow(uow: UnitOfWork) -> bool:
            changed = await uow.follows.follow(follower, followee, now_ms=now)
            if changed:
                uow.events.user_followed(follower, followee, at_ms=now)
            return changed

        return await self._write(follow)

    async def cancel(self, follower: int, followee: int) -> bool:
        """``follower`` stops following ``followee`` (idempotent); whether anything changed."""
        check_pair(follower, followee)
        now = _now_ms()
        return await self._write(lambda uow: uow.follows.cancel(follower, followee, now_ms=now))

    async def followees(self, follower: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """A page of whom ``follower`` follows, newest relation first."""
        check_uid(follower, "follower")
        cursor, size = page(min_id, limit)
        async with self._uow() as uow:
            return await uow.follows.followees(follower, min_id=cursor, limit=size)

    async def followers(self, followee: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """A page of who follows ``followee``, newest relation first."""
        check_uid(followee, "followee")
        cursor, size = page(min_id, limit)
        async with self._uow() as uow:
            return await uow.follows.followers(followee, min_id=cursor, limit=size)

    async def relation(self, follower: int, followee: int) -> RelationStatus:
        """Whether ``follower`` follows ``followee`` and whether it is followed back."""
        check_uid(follower, "follower")
        check_uid(followee, "followee")
        async with self._uow() as uow:
            return RelationStatus(
                following=await uow.follows.is_following(follower, followee),
                followed_by=await uow.follows.is_following(followee, follower),
            )

    async def stats(self, uid: int) -> FollowStats:
        """Followers and followees of ``uid``."""
        check_uid(uid, "uid")
        async with self._uow() as uow:
            return await uow.follows.stats(uid)
