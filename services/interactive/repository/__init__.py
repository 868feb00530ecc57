"""Storage adapters of the interactive service: SQL (the truth) plus cached counts in Redis.

- :class:`CachedInteractiveRepository` implements
  :class:`services.interactive.service.InteractiveRepository` on an
  :class:`~services.interactive.repository.dao.InteractiveDAO`: counts and a user's flags are
  read cache-aside from :class:`~services.interactive.repository.cache.CountsCache`; every
  counter change is remembered and applied to the cached hashes after the commit, and every
  flag a write establishes is written through to the cached flags after the commit.
- :class:`SqlUnitOfWork` implements :class:`services.interactive.service.UnitOfWork`: one
  session and transaction per use case; deadlocks and "database is locked" leave it as
  :class:`kit.sql.WriteConflict` (retried by the service).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import CachingUnitOfWork, row_mapper
from services.interactive.domain import Counts, Flags
from services.interactive.repository.cache import CountsCache, FlagUpdate
from services.interactive.repository.dao import CountColumn, InteractiveDAO, InteractiveRow

__all__ = ["CachedInteractiveRepository", "SqlUnitOfWork"]


_counts = row_mapper(Counts, InteractiveRow)
_COUNTERS: dict[str, CountColumn] = {"liked": "like_cnt", "collected": "collect_cnt"}


class CachedInteractiveRepository:
    """Counters and flags in one session, with counts cached in Redis."""

    def __init__(self, dao: InteractiveDAO, cache: CountsCache) -> None:
        self._dao = dao
        self._cache = cache
        self._changes: list[tuple[str, CountColumn, dict[int, int]]] = []
        self._flag_updates: list[FlagUpdate] = []

    async def _change(
        self, biz: str, column: CountColumn, deltas: Mapping[int, int], now_ms: int
    ) -> None:
        positive = {biz_id: d for biz_id, d in deltas.items() if d > 0}
        await self._dao.add_counts(biz, positive, column, now_ms)
        for biz_id, delta in deltas.items():
            if delta < 0:
                await self._dao.decrement(biz, biz_id, column, now_ms)
        self._changes.append((biz, column, dict(deltas)))

    async def add_reads(self, biz: str, reads: Mapping[int, int], *, now_ms: int) -> None:
        """One multi-row upsert adding every object's reads."""
        await self._change(biz, "read_cnt", reads, now_ms)

    async def add_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Insert the like row and, if it is new, count it."""
        inserted = await self._dao.insert_like(uid, biz, biz_id, now_ms)
        return await self._flagged(biz, biz_id, uid, "liked", True, changed=inserted, now_ms=now_ms)

    async def remove_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Delete the like row and, if there was one, uncount it."""
        deleted = await self._dao.delete_like(uid, biz, biz_id)
        return await self._flagged(biz, biz_id, uid, "liked", False, changed=deleted, now_ms=now_ms)

    async def add_collect(self, biz: str, biz_id: int, uid: int, cid: int, *, now_ms: int) -> bool:
        """Insert (or move) the collect row and, if it is new, count it."""
        inserted = await self._dao.insert_collect(uid, biz, biz_id, cid, now_ms)
        return await self._flagged(
            biz, biz_id, uid, "collected", True, changed=inserted, now_ms=now_ms
        )

    async def remove_collect(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Delete the collect row and, if there was one, uncount it."""
        deleted = await self._dao.delete_collect(uid, biz, biz_id)
        return await self._flagged(
            biz, biz_id, uid, "collected", False, changed=deleted, now_ms=now_ms
        )

    async def _flagged(
        self, biz: str, biz_id: int, uid: int, flag: str, on: bool, *, changed: bool, now_ms: int
    ) -> bool:
        """Count a flag row the write really added or removed; remember the flag for the
        cache either way (it is what the user now has)."""
        if changed:
            await self._change(biz, _COUNTERS[flag], {biz_id: 1 if on else -1}, now_ms)
        self._flag_updates.append((biz, biz_id, uid, flag, on))
        return changed

    async def counts(self, biz: str, biz_id: int) -> Counts:
        """Cache first, then SQL (filling the cache)."""
        return (await self.counts_many(biz, [biz_id]))[biz_id]

    async def counts_many(self, biz: str, biz_ids: Iterable[int]) -> dict[int, Counts]:
        """Cached counts plus the misses from SQL (zeros for untouched objects)."""
        wanted = list(biz_ids)
        found = await self._cache.get_many(biz, wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            rows = {row.biz_id: _counts(row) for row in await self._dao.get_counts(biz, missing)}
            loaded = {biz_id: rows.get(biz_id, Counts()) for biz_id in missing}
            await self._cache.set_many(biz, loaded)
            found.update(loaded)
        return found

    async def flags(self, biz: str, biz_id: int, uid: int) -> Flags:
        """Both flag rows' existence in one SQL query; caches them (absent fields only)."""
        liked, collected = await self._dao.get_flags(uid, biz, biz_id)
        flags = Flags(liked=liked, collected=collected)
        await self._cache.fill_flags(biz, biz_id, uid, flags)
        return flags

    async def after_commit(self) -> None:
        """Adjust cached counts by what this repository changed and write the flags it set
        through to the cache (after the commit)."""
        changes, self._changes = self._changes, []
        for biz, column, deltas in changes:
            await self._cache.incr_if_cached(biz, column, deltas)
        updates, self._flag_updates = self._flag_updates, []
        await self._cache.write_flags(updates)


class SqlUnitOfWork(CachingUnitOfWork[CachedInteractiveRepository, CountsCache]):
    """One SQL transaction with a :class:`CachedInteractiveRepository` bound to it."""

    interactives = CachingUnitOfWork.repository

    def open_repository(self, session: AsyncSession) -> CachedInteractiveRepository:
        return CachedInteractiveRepository(InteractiveDAO(session), self.cache)
