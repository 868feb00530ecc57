"""Storage adapters of the follow service: SQL (the truth) plus a Redis cache of counts.

- :class:`CachedFollowRepository` implements
  :class:`services.follow.service.FollowRepository`: relation changes and count changes go
  to SQL in one transaction (see :mod:`services.follow.repository.dao` for why the counts
  stay exact); counts are read cache first, then SQL, then cached.
- :class:`SqlUnitOfWork` implements :class:`services.follow.service.UnitOfWork`: the
  repository and the events (:class:`services.follow.events.FollowEventWriter` on the
  ``follow_outbox`` table) share its transaction; after a successful commit it invalidates
  the counts of the users the transaction changed; deadlocks and lock timeouts leave it as
  :class:`kit.sql.WriteConflict` (retried by the service).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import CachingUnitOfWork, SessionFactory, row_mapper
from services.follow.domain import FollowRelation, FollowStats
from services.follow.events import OUTBOX_TOPICS, FollowEventWriter
from services.follow.repository.cache import FollowStatsCache
from services.follow.repository.dao import (
    ACTIVE,
    CANCELLED,
    FollowDAO,
    FollowOutboxRow,
    FollowRelationRow,
)

__all__ = ["CachedFollowRepository", "SqlUnitOfWork", "follow_outbox"]


_relation = row_mapper(FollowRelation, FollowRelationRow, renamed={"ctime_ms": "ctime"})


def follow_outbox() -> Outbox:
    """The outbox of the follow service's events (``follow_outbox``, declared topics only)."""
    return Outbox(FollowOutboxRow, topics=OUTBOX_TOPICS)


class CachedFollowRepository:
    """Relations in SQL with cache-aside counts, inside one unit of work's session."""

    def __init__(self, dao: FollowDAO, cache: FollowStatsCache) -> None:
        self._dao = dao
        self._cache = cache
        self._stale: set[int] = set()

    async def _count(self, follower: int, followee: int, delta: int, now_ms: int) -> None:
        # Same lock order in every transaction (lower uid first), so two writers touching
        # the same pair of stats rows cannot deadlock on them.
        changes = {follower: (0, delta), followee: (delta, 0)}
        for uid in sorted(changes):
            followers, followees = changes[uid]
            await self._dao.add_to_stats(
                uid, followers=followers, followees=followees, utime=now_ms
            )
        self._stale.update(changes)

    async def follow(self, follower: int, followee: int, *, now_ms: int) -> bool:
        """Reactivate or insert the relation; count it only if its state changed."""
        changed = await self._dao.set_status(
            follower, followee, from_status=CANCELLED, to_status=ACTIVE, utime=now_ms
        ) or await self._dao.insert_active(follower, followee, now_ms)
        if changed:
            await self._count(follower, followee, 1, now_ms)
        return changed

    async def cancel(self, follower: int, followee: int, *, now_ms: int) -> bool:
        """Deactivate the relation; uncount it only if it was active."""
        changed = await self._dao.set_status(
            follower, followee, from_status=ACTIVE, to_status=CANCELLED, utime=now_ms
        )
        if changed:
            await self._count(follower, followee, -1, now_ms)
        return changed

    async def followees(self, follower: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """Whom ``follower`` follows, from SQL."""
        rows = await self._dao.followees(follower, min_id=min_id, limit=limit)
        return [_relation(row) for row in rows]

    async def followers(self, followee: int, *, min_id: int, limit: int) -> list[FollowRelation]:
        """Who follows ``followee``, from SQL."""
        rows = await self._dao.followers(followee, min_id=min_id, limit=limit)
        return [_relation(row) for row in rows]

    async def is_following(self, follower: int, followee: int) -> bool:
        """Whether the relation is active, from SQL."""
        return await self._dao.is_active(follower, followee)

    async def stats(self, uid: int) -> FollowStats:
        """Cache first, then ``follow_stats`` (zeros for a user never involved)."""
        cached = await self._cache.get(uid)
        if cached is not None:
            return cached
        row = await self._dao.stats(uid)
        stats = FollowStats(
            uid=uid,
            followers=row.followers if row else 0,
            followees=row.followees if row else 0,
        )
        await self._cache.set(stats)
        return stats

    async def after_commit(self) -> None:
        """Drop the cached counts of the users changed (after the commit)."""
        stale, self._stale = self._stale, set()
        await self._cache.invalidate(sorted(stale))


class SqlUnitOfWork(CachingUnitOfWork[CachedFollowRepository, FollowStatsCache]):
    """One SQL transaction with a :class:`CachedFollowRepository` and the events bound to it."""

    follows = CachingUnitOfWork.repository

    def __init__(self, sessions: SessionFactory, cache: FollowStatsCache, outbox: Outbox) -> None:
        super().__init__(sessions, cache)
        self._outbox = outbox
        self._events: FollowEventWriter | None = None

    def open_repository(self, session: AsyncSession) -> CachedFollowRepository:
        self._events = FollowEventWriter(self._outbox.bound(session))
        return CachedFollowRepository(FollowDAO(session), self.cache)

    @property
    def events(self) -> FollowEventWriter:
        """``UserFollowed``, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events
