"""SQL schema and queries of the follow service (SQLAlchemy 2.0, async).

Tables:

- ``follow_relations``: one row per ordered pair ever followed, unique on
  ``(follower, followee)``, with ``status`` 1 = active, 2 = cancelled. Cancelling keeps the
  row; following again reactivates it. Indexes ``(follower, status, id)`` and
  ``(followee, status, id)`` serve the followee and follower lists by id cursor (equality,
  equality, then the range on id: E-S-R), newest first.
- ``follow_stats``: followers and followees per user, changed by the transaction that
  changes a relation.
- ``follow_outbox``: ``UserFollowed`` events written in the transaction that made a relation
  active (:mod:`kit.outbox`).

Exact counts under concurrency: a count moves only when a statement *changed* a relation's
state, as told by its rowcount: ``UPDATE ... SET status = 1 WHERE ... AND status = 2``
(reactivate), ``INSERT`` that ignores a duplicate (first follow), ``UPDATE ... SET status = 2
WHERE ... AND status = 1`` (cancel). Both databases serialise these on the relation row
(InnoDB row lock; SQLite's single writer), so of two racing identical calls exactly one sees
rowcount 1.

:class:`FollowDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Index, SmallInteger, UniqueConstraint, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import ColumnElement

from kit.outbox import outbox_model
from kit.sql import SessionDAO, big_id, rowcount, service_metadata, table_args

ACTIVE = 1
CANCELLED = 2


class Base(DeclarativeBase):
    """Declarative base of the follow service's tables."""

    metadata = service_metadata()


class FollowRelationRow(Base):
    """One row of ``follow_relations``."""

    __tablename__ = "follow_relations"
    __table_args__ = table_args(
        UniqueConstraint("follower", "followee", name="uq_follow_relations_pair"),
        Index("ix_follow_relations_follower", "follower", "status", "id"),
        Index("ix_follow_relations_followee", "followee", "status", "id"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    follower: Mapped[int] = mapped_column(BigInteger)
    followee: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(SmallInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class FollowStatsRow(Base):
    """One row of ``follow_stats``."""

    __tablename__ = "follow_stats"
    __table_args__ = table_args()

    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    followers: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    followees: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    utime: Mapped[int] = mapped_column(BigInteger)


FollowOutboxRow = outbox_model(Base, "follow_outbox")
"""Events recorded with the transaction that caused them (see :mod:`kit.outbox`)."""


class FollowDAO(SessionDAO):
    """Queries on the follow tables within the caller's session; never commits."""

    async def set_status(
        self, follower: int, followee: int, *, from_status: int, to_status: int, utime: int
    ) -> bool:
        """Move the pair from ``from_status`` to ``to_status``; whether it was in it."""
        result = await self._session.execute(
            sql_update(FollowRelationRow)
            .where(
                FollowRelationRow.follower == follower,
                FollowRelationRow.followee == followee,
                FollowRelationRow.status == from_status,
            )
            .values(status=to_status, utime=utime)
        )
        return rowcount(result) == 1

    async def insert_active(self, follower: int, followee: int, now: int) -> bool:
        """Insert an active relation unless the pair exists; whether a row was inserted."""
        values = {
            "follower": follower,
            "followee": followee,
            "status": ACTIVE,
            "ctime": now,
            "utime": now,
        }
        return await self.insert_ignore(FollowRelationRow, values) == 1

    async def add_to_stats(self, uid: int, *, followers: int, followees: int, utime: int) -> None:
        """Change ``uid``'s counts by these deltas (upsert)."""
        values = {
            "uid": uid,
            "followers": max(followers, 0),
            "followees": max(followees, 0),
            "utime": utime,
        }
        changes = {
            "followers": FollowStatsRow.followers + followers,
            "followees": FollowStatsRow.followees + followees,
            "utime": utime,
        }
        await self.upsert(FollowStatsRow, values, conflict=("uid",), changes=changes)

    async def is_active(self, follower: int, followee: int) -> bool:
        """Whether ``follower`` currently follows ``followee``."""
        status = await self._session.scalar(
            select(FollowRelationRow.status).where(
                FollowRelationRow.follower == follower, FollowRelationRow.followee == followee
            )
        )
        return status == ACTIVE

    async def followees(
        self, follower: int, *, min_id: int, limit: int
    ) -> Sequence[FollowRelationRow]:
        """Active relations of ``follower``, newest first, ids below ``min_id`` (0 = none)."""
        return await self._active(FollowRelationRow.follower == follower, min_id, limit)

    async def followers(
        self, followee: int, *, min_id: int, limit: int
    ) -> Sequence[FollowRelationRow]:
        """Active relations towards ``followee``, newest first, ids below ``min_id``."""
        return await self._active(FollowRelationRow.followee == followee, min_id, limit)

    async def _active(
        self, party: ColumnElement[bool], min_id: int, limit: int
    ) -> Sequence[FollowRelationRow]:
        stmt = (
            select(FollowRelationRow)
            .where(party, FollowRelationRow.status == ACTIVE)
            .order_by(FollowRelationRow.id.desc())
            .limit(limit)
        )
        if min_id:
            stmt = stmt.where(FollowRelationRow.id < min_id)
        return (await self._session.scalars(stmt)).all()

    async def stats(self, uid: int) -> FollowStatsRow | None:
        """``uid``'s counts row, if any relation ever touched it."""
        return await self._session.get(FollowStatsRow, uid)
