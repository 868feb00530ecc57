"""SQL schema and queries of the tag service (SQLAlchemy 2.0, async).

Tables:

- ``tags``: one row per tag, ``(uid, name)`` unique; names compare byte for byte on both
  databases (``exact_string``), so "Go" and "go" are two tags.
- ``tag_resources``: one row per resource ever tagged: its owner, the ``version`` of its tag
  set (bumped by each change) and when it last changed. AttachTags locks this row
  (``SELECT ... FOR UPDATE``) so that concurrent replacements of one set serialise.
- ``tag_links``: which tag is on which resource, ``(tag_id, biz, biz_id)`` unique; listed per
  tag newest first by ``id`` (index ``(tag_id, id)``), per resource by ``(biz, biz_id)``,
  per user by ``uid`` (the cache's preload).
- ``tag_outbox``: ``TagsChanged`` events written in the transaction of the change
  (:mod:`kit.outbox`).

"Recently active users" (the preload) are the owners of tags created, or of resources
retagged, since an instant: ``ix_tags_ctime`` and ``ix_tag_resources_utime`` make both scans
range reads.

:class:`TagDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import (
    BigInteger,
    Index,
    String,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    union_all,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, exact_string, service_metadata, table_args
from services.tag.domain import NAME_MAX_LENGTH

BIZ_LENGTH = 32


class Base(DeclarativeBase):
    """Declarative base of the tag service's tables."""

    metadata = service_metadata()


class TagRow(Base):
    """One row of ``tags``."""

    __tablename__ = "tags"
    __table_args__ = table_args(
        UniqueConstraint("uid", "name", name="uq_tags_uid_name"),
        Index("ix_tags_ctime", "ctime"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(exact_string(NAME_MAX_LENGTH))
    ctime: Mapped[int] = mapped_column(BigInteger)


class ResourceRow(Base):
    """One row of ``tag_resources``."""

    __tablename__ = "tag_resources"
    __table_args__ = table_args(
        UniqueConstraint("biz", "biz_id", name="uq_tag_resources_biz_biz_id"),
        Index("ix_tag_resources_utime", "utime"),
        Index("ix_tag_resources_uid", "uid"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    biz: Mapped[str] = mapped_column(String(BIZ_LENGTH))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class LinkRow(Base):
    """One row of ``tag_links``: tag ``tag_id`` is on ``(biz, biz_id)``."""

    __tablename__ = "tag_links"
    __table_args__ = table_args(
        UniqueConstraint("tag_id", "biz", "biz_id", name="uq_tag_links_tag_id_biz_biz_id"),
        Index("ix_tag_links_tag_id_id", "tag_id", "id"),
        Index("ix_tag_links_biz_biz_id", "biz", "biz_id"),
        Index("ix_tag_links_uid", "uid"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    tag_id: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    biz: Mapped[str] = mapped_column(String(BIZ_LENGTH))
    biz_id: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)


TagOutboxRow = outbox_model(Base, "tag_outbox")
"""Events recorded with the transaction that caused them (see :mod:`kit.outbox`)."""


class TagDAO(SessionDAO):
    """Queries on the tag tables within the caller's session; never commits."""

    async def insert_tag(self, uid: int, name: str, now: int) -> TagRow:
        """Insert a tag (``IntegrityError`` when ``uid`` has one of that name)."""
        return await self.insert(TagRow(uid=uid, name=name, ctime=now))

    async def tag_named(self, uid: int, name: str) -> TagRow | None:
        """``uid``'s tag called ``name``."""
        return await self._session.scalar(
            select(TagRow).where(TagRow.uid == uid, TagRow.name == name)
        )

    async def count_tags(self, uid: int) -> int:
        """How many tags ``uid`` owns."""
        return int(await self._session.scalar(select(func.count()).where(TagRow.uid == uid)) or 0)

    async def user_tags(self, uids: Collection[int]) -> Sequence[TagRow]:
        """Every tag of the users ``uids``."""
        if not uids:
            return []
        return (await self._session.scalars(select(TagRow).where(TagRow.uid.in_(uids)))).all()

    async def tags_by_id(self, tag_ids: Collection[int]) -> Sequence[TagRow]:
        """The tags of these ids that exist."""
        if not tag_ids:
            return []
        return (await self._session.scalars(select(TagRow).where(TagRow.id.in_(tag_ids)))).all()

    async def resource(
        self, biz: str, biz_id: int, *, for_update: bool = False
    ) -> ResourceRow | None:
        """The ``tag_resources`` row of a resource; ``for_update`` locks it."""
        stmt = select(ResourceRow).where(ResourceRow.biz == biz, ResourceRow.biz_id == biz_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def claim_resource(self, biz: str, biz_id: int, uid: int, now: int) -> ResourceRow:
        """The resource's row, locked, created at version 0 if it has none."""
        await self.insert_ignore(
            ResourceRow.__table__,
            {"biz": biz, "biz_id": biz_id, "uid": uid, "version": 0, "utime": now},
        )
        row = await self._session.scalar(
            select(ResourceRow)
            .where(ResourceRow.biz == biz, ResourceRow.biz_id == biz_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is None:  # inserted or found just above, in this transaction
            raise RuntimeError(f"tag_resources row of {biz} {biz_id} vanished")
        return row

    async def resource_tag_ids(self, biz: str, biz_id: int) -> set[int]:
        """The ids of the tags on a resource."""
        ids = await self._session.scalars(
            select(LinkRow.tag_id).where(LinkRow.biz == biz, LinkRow.biz_id == biz_id)
        )
        return set(ids)

    async def link(
        self, tag_ids: Collection[int], uid: int, biz: str, biz_id: int, now: int
    ) -> None:
        """Put the tags ``tag_ids`` on a resource (they are not on it yet)."""
        if tag_ids:
            await self._session.execute(
                insert(LinkRow),
                [
                    {"tag_id": t, "uid": uid, "biz": biz, "biz_id": biz_id, "ctime": now}
                    for t in sorted(tag_ids)
                ],
            )

    async def unlink(self, tag_ids: Collection[int], biz: str, biz_id: int) -> None:
        """Take the tags ``tag_ids`` off a resource."""
        if tag_ids:
            await self._session.execute(
                delete(LinkRow).where(
                    LinkRow.biz == biz, LinkRow.biz_id == biz_id, LinkRow.tag_id.in_(tag_ids)
                )
            )

    async def bump(self, row: ResourceRow, now: int) -> None:
        """Record a change of the resource's tag set (locked by :meth:`claim_resource`)."""
        row.version += 1
        row.utime = now
        await self.flush()

    async def resource_tags(self, biz: str, biz_id: int) -> Sequence[TagRow]:
        """The tags on a resource."""
        return (
            await self._session.scalars(
                select(TagRow)
                .join(LinkRow, LinkRow.tag_id == TagRow.id)
                .where(LinkRow.biz == biz, LinkRow.biz_id == biz_id)
            )
        ).all()

    async def resources_after(
        self, biz: str, after_biz_id: int, limit: int
    ) -> Sequence[ResourceRow]:
        """Up to ``limit`` resources of ``biz`` with ids above ``after_biz_id``, in id order
        (a range read of ``uq_tag_resources_biz_biz_id``)."""
        return (
            await self._session.scalars(
                select(ResourceRow)
                .where(ResourceRow.biz == biz, ResourceRow.biz_id > after_biz_id)
                .order_by(ResourceRow.biz_id)
                .limit(limit)
            )
        ).all()

    async def tags_on(self, biz: str, biz_ids: Collection[int]) -> Sequence[tuple[int, TagRow]]:
        """``(biz_id, tag)`` for every tag on the resources ``biz_ids`` of ``biz``."""
        if not biz_ids:
            return []
        rows = await self._session.execute(
            select(LinkRow.biz_id, TagRow)
            .join(TagRow, LinkRow.tag_id == TagRow.id)
            .where(LinkRow.biz == biz, LinkRow.biz_id.in_(biz_ids))
        )
        return [(int(biz_id), tag) for biz_id, tag in rows]

    async def links_under(
        self, tag_id: int, before_id: int | None, limit: int
    ) -> Sequence[LinkRow]:
        """Up to ``limit`` links of tag ``tag_id`` with ids below ``before_id``, newest first."""
        stmt = select(LinkRow).where(LinkRow.tag_id == tag_id)
        if before_id is not None:
            stmt = stmt.where(LinkRow.id < before_id)
        return (await self._session.scalars(stmt.order_by(LinkRow.id.desc()).limit(limit))).all()

    async def recently_active(self, since: int, limit: int) -> list[int]:
        """Up to ``limit`` users who created a tag or retagged a resource at or after
        ``since``, the most recently active first."""
        changes = union_all(
            select(TagRow.uid.label("uid"), TagRow.ctime.label("at")).where(TagRow.ctime >= since),
            select(ResourceRow.uid.label("uid"), ResourceRow.utime.label("at")).where(
                ResourceRow.utime >= since
            ),
        ).subquery()
        latest = func.max(changes.c.at)
        rows = await self._session.execute(
            select(changes.c.uid).group_by(changes.c.uid).order_by(latest.desc()).limit(limit)
        )
        return [int(uid) for uid in rows.scalars()]

    async def user_resources(self, uids: Collection[int]) -> Sequence[ResourceRow]:
        """The resources (ever tagged) of the users ``uids``."""
        if not uids:
            return []
        return (
            await self._session.scalars(select(ResourceRow).where(ResourceRow.uid.in_(uids)))
        ).all()

    async def user_links(self, uids: Collection[int]) -> Sequence[LinkRow]:
        """The links on the resources of the users ``uids``."""
        if not uids:
            return []
        return (await self._session.scalars(select(LinkRow).where(LinkRow.uid.in_(uids)))).all()
