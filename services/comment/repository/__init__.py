"""Storage adapters of the comment service: SQL (the truth) plus a Redis first-page cache.

- :class:`CachedCommentRepository` implements
  :class:`services.comment.service.CommentRepository`: writes go to SQL and keep both counts
  (``comment_counts`` and the thread's ``reply_cnt``) in the same transaction; the first
  page of an object (``min_id == 0``) is read cache first, then SQL, then cached.
- :class:`SqlUnitOfWork` implements :class:`services.comment.service.UnitOfWork`; after a
  successful commit it invalidates the first pages of the objects the transaction changed;
  deadlocks and lock timeouts leave it as :class:`kit.sql.WriteConflict` (retried by the
  service).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import CachingUnitOfWork, row_mapper
from services.comment.domain import Comment, NewComment
from services.comment.repository.cache import FirstPageCache
from services.comment.repository.dao import CommentDAO, CommentRow

__all__ = ["CachedCommentRepository", "SqlUnitOfWork", "comment_from_row"]


comment_from_row = row_mapper(Comment, CommentRow, renamed={"ctime_ms": "ctime"}, given=["replies"])
"""The domain comment stored in a row (``replies=`` a tuple of its first replies)."""


class CachedCommentRepository:
    """Comments in SQL with a cache-aside first page, inside one unit of work's session."""

    def __init__(self, dao: CommentDAO, cache: FirstPageCache) -> None:
        self._dao = dao
        self._cache = cache
        self._stale: set[tuple[str, int]] = set()

    async def get(self, comment_id: int, *, for_update: bool = False) -> Comment | None:
        """One comment from SQL."""
        row = await self._dao.get(comment_id, for_update=for_update)
        return comment_from_row(row) if row is not None else None

    async def add(self, comment: NewComment, *, now_ms: int) -> Comment:
        """Insert and count ``comment`` in the transaction."""
        row = await self._dao.insert(
            CommentRow(
                uid=comment.uid,
                biz=comment.biz,
                biz_id=comment.biz_id,
                root_id=comment.root_id,
                parent_id=comment.parent_id,
                content=comment.content,
                reply_cnt=0,
                ctime=now_ms,
                utime=now_ms,
            )
        )
        if comment.root_id:
            await self._dao.add_replies(comment.root_id, 1, now_ms)
        await self._dao.add_to_count(comment.biz, comment.biz_id, 1, now_ms)
        self._stale.add((comment.biz, comment.biz_id))
        return comment_from_row(row)

    async def delete_subtree(self, comment: Comment, *, now_ms: int) -> int:
        """Delete ``comment`` and its descendants and uncount them."""
        row = await self._dao.get(comment.id)
        if row is None:
            return 0
        deleted = await self._dao.delete_ids(await self._dao.subtree_ids(row))
        if comment.root_id and deleted:
            await self._dao.add_replies(comment.root_id, -deleted, now_ms)
        if deleted:
            await self._dao.add_to_count(comment.biz, comment.biz_id, -deleted, now_ms)
        self._stale.add((comment.biz, comment.biz_id))
        return deleted

    async def page(
        self, biz: str, biz_id: int, *, min_id: int, limit: int, per_root: int
    ) -> list[Comment]:
        """Top-level comments with their first replies; the first page goes through Redis."""
        shape = f"{limit}:{per_root}"
        if min_id == 0:
            cached = await self._cache.get(biz, biz_id, shape)
            if cached is not None:
                return cached
        roots = await self._dao.top_level(biz, biz_id, min_id=min_id, limit=limit)
        replies: dict[int, list[Comment]] = {}
        for reply in await self._dao.first_replies([r.id for r in roots], per_root):
            replies.setdefault(reply.root_id, []).append(comment_from_row(reply))
        page = [
            comment_from_row(
                root, replies=tuple(sorted(replies.get(root.id, []), key=lambda c: c.id))
            )
            for root in roots
        ]
        if min_id == 0:
            await self._cache.set(biz, biz_id, shape, page)
        return page

    async def replies(self, root_id: int, *, max_id: int, limit: int) -> list[Comment]:
        """Replies of one thread by cursor, from SQL."""
        rows = await self._dao.replies(root_id, max_id=max_id, limit=limit)
        return [comment_from_row(row) for row in rows]

    async def counts(self, biz: str, biz_ids: list[int]) -> dict[int, int]:
        """Counts from ``comment_counts``, 0 for objects without a row."""
        stored = await self._dao.counts(biz, biz_ids)
        return {biz_id: stored.get(biz_id, 0) for biz_id in biz_ids}

    async def after_commit(self) -> None:
        """Drop the cached first pages of the objects changed (after the commit)."""
        stale, self._stale = self._stale, set()
        for biz, biz_id in sorted(stale):
            await self._cache.invalidate(biz, biz_id)


class SqlUnitOfWork(CachingUnitOfWork[CachedCommentRepository, FirstPageCache]):
    """One SQL transaction with a :class:`CachedCommentRepository` bound to it."""

    comments = CachingUnitOfWork.repository

    def open_repository(self, session: AsyncSession) -> CachedCommentRepository:
        return CachedCommentRepository(CommentDAO(session), self.cache)
