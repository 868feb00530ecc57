"""SQL schema and queries of the comment service (SQLAlchemy 2.0, async).

Tables:

- ``comments``: one row per comment. Indexes, each chosen so a page reads only its rows:
  ``ix_comments_biz_thread (biz, biz_id, root_id, id)`` serves top-level pages (equality on
  ``biz, biz_id, root_id = 0``, then the id cursor, E-S-R); ``ix_comments_root_id
  (root_id, id)`` serves replies of one thread by cursor and the first replies of a page
  (one ``LIMIT`` subquery per root, joined by ``UNION ALL``); ``ix_comments_parent_id``
  serves the recursive walk that deletes a reply's sub-tree.
- ``comment_counts``: the number of comments per business object, kept by the same
  transaction that inserts or deletes them (no ``COUNT(*)``).

No foreign keys: integrity of ``root_id``/``parent_id`` is the service's job, so rows can be
sharded or archived later without cascading constraints.

:class:`CommentDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Index, String, Text, select, union_all, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import Select

from kit.sql import SessionDAO, big_id, rowcount, service_metadata, table_args

# Deleting a large sub-tree goes in chunks so no statement carries thousands of parameters.
_DELETE_CHUNK = 500


class Base(DeclarativeBase):
    """Declarative base of the comment service's tables."""

    metadata = service_metadata()


class CommentRow(Base):
    """One row of ``comments``."""

    __tablename__ = "comments"
    __table_args__ = table_args(
        Index("ix_comments_biz_thread", "biz", "biz_id", "root_id", "id"),
        Index("ix_comments_root_id", "root_id", "id"),
        Index("ix_comments_parent_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(String(32))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    root_id: Mapped[int] = mapped_column(BigInteger)
    parent_id: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[str] = mapped_column(Text)
    reply_cnt: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class CommentCountRow(Base):
    """One row of ``comment_counts``: how many comments ``(biz, biz_id)`` has."""

    __tablename__ = "comment_counts"
    __table_args__ = table_args()

    biz: Mapped[str] = mapped_column(String(32), primary_key=True)
    biz_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cnt: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    utime: Mapped[int] = mapped_column(BigInteger)


class CommentDAO(SessionDAO):
    """Queries on the comment tables within the caller's session; never commits."""

    async def get(self, comment_id: int, *, for_update: bool = False) -> CommentRow | None:
        """The row with ``comment_id``; ``for_update`` locks it (MySQL; SQLite locks the file)."""
        return await self.get_row(CommentRow, comment_id, for_update=for_update)

    async def add_replies(self, root_id: int, delta: int, utime: int) -> None:
        """Change the reply count of thread ``root_id`` by ``delta``."""
        await self._session.execute(
            update(CommentRow)
            .where(CommentRow.id == root_id)
            .values(reply_cnt=CommentRow.reply_cnt + delta, utime=utime)
        )

    async def top_level(
        self, biz: str, biz_id: int, *, min_id: int, limit: int
    ) -> Sequence[CommentRow]:
        """Top-level comments with id < ``min_id`` (0 = no bound), newest first."""
        stmt = (
            select(CommentRow)
            .where(CommentRow.biz == biz, CommentRow.biz_id == biz_id, CommentRow.root_id == 0)
            .order_by(CommentRow.id.desc())
            .limit(limit)
        )
        if min_id > 0:
            stmt = stmt.where(CommentRow.id < min_id)
        return (await self._session.scalars(stmt)).all()

    async def first_replies(self, root_ids: Sequence[int], per_root: int) -> Sequence[CommentRow]:
        """The oldest ``per_root`` replies of each root, in one query.

        One ``ORDER BY id LIMIT`` subquery per root, glued with ``UNION ALL``: each reads
        ``per_root`` index entries however long its thread is (a window function over
        ``root_id IN (...)`` would scan every reply of every listed thread).
        """
        if not root_ids:
            return []
        parts: list[Select[CommentRow]] = [
            select(CommentRow)
            .where(CommentRow.root_id == root_id)
            .order_by(CommentRow.id)
            .limit(per_root)
            for root_id in root_ids
        ]
        if len(parts) == 1:
            return (await self._session.scalars(parts[0])).all()
        # SQLite accepts LIMIT inside a compound SELECT only in a subquery.
        wrapped = [select(part.subquery()) for part in parts]
        compound = union_all(*wrapped).subquery()
        stmt = select(CommentRow).join(compound, CommentRow.id == compound.c.id)
        return (await self._session.scalars(stmt)).all()

    async def replies(self, root_id: int, *, max_id: int, limit: int) -> Sequence[CommentRow]:
        """Replies of thread ``root_id`` with id > ``max_id``, oldest first."""
        stmt = (
            select(CommentRow)
            .where(CommentRow.root_id == root_id, CommentRow.id > max_id)
            .order_by(CommentRow.id)
            .limit(limit)
        )
        return (await self._session.scalars(stmt)).all()

    async def subtree_ids(self, row: CommentRow) -> list[int]:
        """Ids of ``row`` and everything below it."""
        if row.root_id == 0:
            stmt = select(CommentRow.id).where(CommentRow.root_id == row.id)
            return [row.id, *(await self._session.scalars(stmt)).all()]
        tree = select(CommentRow.id).where(CommentRow.id == row.id).cte("subtree", recursive=True)
        tree = tree.union_all(select(CommentRow.id).where(CommentRow.parent_id == tree.c.id))
        return list((await self._session.scalars(select(tree.c.id))).all())

    async def delete_ids(self, ids: Sequence[int]) -> int:
        """Delete the rows with these ids; how many there were."""
        deleted = 0
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start : start + _DELETE_CHUNK]
            result = await self._session.execute(
                sql_delete(CommentRow).where(CommentRow.id.in_(chunk))
            )
            deleted += rowcount(result)
        return deleted

    async def add_to_count(self, biz: str, biz_id: int, delta: int, utime: int) -> None:
        """Change the comment count of ``(biz, biz_id)`` by ``delta`` (upsert)."""
        await self.upsert(
            CommentCountRow,
            {"biz": biz, "biz_id": biz_id, "cnt": max(delta, 0), "utime": utime},
            conflict=("biz", "biz_id"),
            changes={"cnt": CommentCountRow.cnt + delta, "utime": utime},
        )

    async def counts(self, biz: str, biz_ids: Sequence[int]) -> dict[int, int]:
        """Stored counts of these objects (absent ones have no comments)."""
        if not biz_ids:
            return {}
        stmt = select(CommentCountRow.biz_id, CommentCountRow.cnt).where(
            CommentCountRow.biz == biz, CommentCountRow.biz_id.in_(biz_ids)
        )
        return {int(biz_id): int(cnt) for biz_id, cnt in (await self._session.execute(stmt)).all()}
