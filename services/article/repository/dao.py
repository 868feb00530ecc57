"""SQL schema and queries of the two article stores (SQLAlchemy 2.0, async).

- ``articles`` is the **author store**: every article with its latest edit and status;
  index ``(author_id, utime)`` serves an author's newest-first list (equality, then sort).
- ``published_articles`` is the **reader store**: the published copy, same id, status 2
  (published) or 3 (withdrawn); index ``(status, utime)`` serves ``ListPub`` (equality on
  the status, then the update-time range and sort).

- ``article_outbox`` holds the ``ArticlePublished``/``ArticleWithdrawn`` events written in
  the transaction of the change they report (:mod:`kit.outbox`).

Content is ``MEDIUMTEXT`` on MySQL/MariaDB (``TEXT`` stops at 64 KB). :class:`ArticleDAO`
works on the session it is given and never commits. Writing the reader copy is an upsert
(:func:`kit.sql.upsert`: ``ON CONFLICT`` on SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL),
so two concurrent publications of one article cannot collide on its primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Index, SmallInteger, String, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, long_text, rowcount, service_metadata, table_args

PUBLISHED = 2


class Base(DeclarativeBase):
    """Declarative base of the article service's tables."""

    metadata = service_metadata()


class _ArticleColumns:
    """The columns both stores have after ``id`` (a mixin: each table gets its own copies)."""

    author_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(256))
    content: Mapped[str] = mapped_column(long_text())
    abstract: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(SmallInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class ArticleRow(_ArticleColumns, Base):
    """One article in the author store."""

    __tablename__ = "articles"
    __table_args__ = table_args(Index("ix_articles_author_id_utime", "author_id", "utime"))

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)


class PublishedArticleRow(_ArticleColumns, Base):
    """The reader copy of an article (same id as in the author store)."""

    __tablename__ = "published_articles"
    __table_args__ = table_args(Index("ix_published_articles_status_utime", "status", "utime"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


ArticleOutboxRow = outbox_model(Base, "article_outbox")
"""Events recorded with the transaction that caused them (see :mod:`kit.outbox`)."""

# The columns of a list entry: everything but the content.
SUMMARY_COLUMNS = (
    ArticleRow.id,
    ArticleRow.author_id,
    ArticleRow.title,
    ArticleRow.abstract,
    ArticleRow.status,
    ArticleRow.ctime,
    ArticleRow.utime,
)


class ArticleDAO(SessionDAO):
    """Queries on both stores within the caller's session; flushes but never commits."""

    async def get(self, article_id: int, *, for_update: bool = False) -> ArticleRow | None:
        """The author-store row; ``for_update`` locks it (``SELECT ... FOR UPDATE`` on MySQL)."""
        return await self.get_row(ArticleRow, article_id, for_update=for_update)

    async def list_by_author(self, author_id: int, offset: int, limit: int) -> Sequence[Any]:
        """Summary rows of the author's articles, newest update first."""
        result = await self._session.execute(
            select(*SUMMARY_COLUMNS)
            .where(ArticleRow.author_id == author_id)
            .order_by(ArticleRow.utime.desc(), ArticleRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all()

    async def upsert_published(self, row: ArticleRow) -> None:
        """Make ``row``'s current version the published reader copy."""
        values = {
            "id": row.id,
            "author_id": row.author_id,
            "title": row.title,
            "content": row.content,
            "abstract": row.abstract,
            "status": PUBLISHED,
            "ctime": row.ctime,
            "utime": row.utime,
        }
        replaced = {k: v for k, v in values.items() if k != "id"}
        await self.upsert(PublishedArticleRow, values, conflict=("id",), changes=replaced)

    async def set_published_status(self, article_id: int, status: int, utime: int) -> bool:
        """Set the reader copy's status; ``False`` if there is no reader copy."""
        result = await self._session.execute(
            sql_update(PublishedArticleRow)
            .where(PublishedArticleRow.id == article_id)
            .values(status=status, utime=utime)
        )
        return rowcount(result) > 0

    async def get_published(self, article_id: int) -> PublishedArticleRow | None:
        """The reader copy if it is published."""
        return await self._session.scalar(
            select(PublishedArticleRow).where(
                PublishedArticleRow.id == article_id, PublishedArticleRow.status == PUBLISHED
            )
        )

    async def published_ids(self, article_ids: Sequence[int]) -> Sequence[int]:
        """Those of ``article_ids`` whose reader copy is published (primary-key lookups)."""
        if not article_ids:
            return []
        result = await self._session.scalars(
            select(PublishedArticleRow.id).where(
                PublishedArticleRow.id.in_(list(article_ids)),
                PublishedArticleRow.status == PUBLISHED,
            )
        )
        return result.all()

    async def list_published(
        self, start_ms: int, end_ms: int, offset: int, limit: int
    ) -> Sequence[PublishedArticleRow]:
        """Published reader copies with ``start_ms <= utime < end_ms``, newest first."""
        result = await self._session.scalars(
            select(PublishedArticleRow)
            .where(
                PublishedArticleRow.status == PUBLISHED,
                PublishedArticleRow.utime >= start_ms,
                PublishedArticleRow.utime < end_ms,
            )
            .order_by(PublishedArticleRow.utime.desc(), PublishedArticleRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all()
