"""SQL schema and queries of the two article stores (SQLAlchemy 2.0, async).

- ``articles`` is the **author store**: every article with its latest edit and status;
  index ``(author_id, utime)`` serves an author's newest-first list (equality, then sort).
- ``published_articles`` is the **reader store**: the published copy, same id, status 2
  (published) or 3 (withdrawn); index ``(status, utime)`` serves ``ListPub`` (equality on
  the status, then the update-time range and sort).

Content is ``MEDIUMTEXT`` on MySQL/MariaDB (``TEXT`` stops at 64 KB). :class:`ArticleDAO`
works on the session it is given and never commits. Writing the reader copy is an upsert
spelled per dialect (``ON CONFLICT`` on SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL), so two
concurrent publications of one article cannot collide on its primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, MetaData, SmallInteger, String, Text, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
PUBLISHED = 2


def big_id() -> TypeEngine[int]:
    """``BIGINT`` primary key type that still autoincrements on SQLite (only INTEGER does)."""
    return BigInteger().with_variant(Integer, "sqlite")


def long_text() -> TypeEngine[str]:
    """``TEXT`` (SQLite) / ``MEDIUMTEXT`` (MySQL, MariaDB): up to 16 MB of HTML."""
    return Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base of the article service's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ArticleRow(Base):
    """One article in the author store."""

    __tablename__ = "articles"
    __table_args__ = (
        Index("ix_articles_author_id_utime", "author_id", "utime"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    author_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(256))
    content: Mapped[str] = mapped_column(long_text())
    abstract: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(SmallInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class PublishedArticleRow(Base):
    """The reader copy of an article (same id as in the author store)."""

    __tablename__ = "published_articles"
    __table_args__ = (
        Index("ix_published_articles_status_utime", "status", "utime"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    author_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(256))
    content: Mapped[str] = mapped_column(long_text())
    abstract: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(SmallInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


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


def _upsert_published(dialect: str, values: dict[str, Any]) -> Insert:
    replaced = {k: v for k, v in values.items() if k != "id"}
    if dialect == "sqlite":
        stmt = sqlite.insert(PublishedArticleRow).values(values)
        return stmt.on_conflict_do_update(index_elements=["id"], set_=replaced)
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(PublishedArticleRow).values(values).on_duplicate_key_update(replaced)
    raise NotImplementedError(f"no upsert for SQL dialect {dialect!r}")


class ArticleDAO:
    """Queries on both stores within the caller's session; flushes but never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert(self, row: ArticleRow) -> ArticleRow:
        """Insert into the author store and flush, so the id is known."""
        self._session.add(row)
        await self._session.flush()
        return row

    async def get(self, article_id: int, *, for_update: bool = False) -> ArticleRow | None:
        """The author-store row; ``for_update`` locks it (``SELECT ... FOR UPDATE`` on MySQL)."""
        stmt = select(ArticleRow).where(ArticleRow.id == article_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def flush(self) -> None:
        """Write pending changes of loaded rows."""
        await self._session.flush()

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
        dialect = self._session.get_bind().dialect.name
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
        await self._session.execute(_upsert_published(dialect, values))

    async def set_published_status(self, article_id: int, status: int, utime: int) -> bool:
        """Set the reader copy's status; ``False`` if there is no reader copy."""
        result = await self._session.execute(
            sql_update(PublishedArticleRow)
            .where(PublishedArticleRow.id == article_id)
            .values(status=status, utime=utime)
        )
        return bool(getattr(result, "rowcount", 0))

    async def get_published(self, article_id: int) -> PublishedArticleRow | None:
        """The reader copy if it is published."""
        return await self._session.scalar(
            select(PublishedArticleRow).where(
                PublishedArticleRow.id == article_id, PublishedArticleRow.status == PUBLISHED
            )
        )

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
