"""Storage adapters of the feed service: SQL.

- :class:`SqlFeedRepository` implements :class:`services.feed.service.FeedRepository` on
  :class:`services.feed.repository.dao.FeedDAO` (see it for the tables);
- :class:`SqlUnitOfWork` implements :class:`services.feed.service.UnitOfWork`: one
  transaction; deadlocks and lock timeouts leave it as :class:`kit.sql.WriteConflict`
  (retried by the service).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import SqlUnitOfWork as BaseUnitOfWork
from services.feed.domain import AuthorState, FanoutJob, FeedEvent, Model, Position
from services.feed.repository.dao import FeedDAO, event_of

__all__ = ["SqlFeedRepository", "SqlUnitOfWork"]


class SqlFeedRepository:
    """Feed events, inboxes, authors and fan-out jobs in SQL, inside one unit of work."""

    def __init__(self, dao: FeedDAO) -> None:
        self._dao = dao

    async def add_event(self, event: FeedEvent, model: Model) -> bool:
        """Store ``event`` once; whether it is new."""
        return await self._dao.add_event(event, model)

    async def event_model(self, event_id: str) -> Model | None:
        """How a stored event is delivered; ``None`` if it is unknown."""
        row = await self._dao.event(event_id)
        return None if row is None else Model(row.model)

    async def event(self, event_id: str) -> FeedEvent | None:
        """The stored event ``event_id``."""
        row = await self._dao.event(event_id)
        return None if row is None else event_of(row)

    async def add_to_inboxes(self, owners: Sequence[int], event_id: str, at_ms: int) -> int:
        """Put the event in each owner's inbox once; how many rows were new."""
        return await self._dao.add_to_inboxes(owners, event_id, at_ms)

    async def inbox(self, owner: int, before: Position | None, limit: int) -> list[FeedEvent]:
        """A page of ``owner``'s inbox, newest first, withdrawn articles left out."""
        return [event_of(row) for row in await self._dao.inbox(owner, before, limit)]

    async def outbox(
        self, authors: Sequence[int], before: Position | None, limit: int
    ) -> list[FeedEvent]:
        """A page of the pull events of ``authors``, newest first."""
        return [event_of(row) for row in await self._dao.outbox(authors, before, limit)]

    async def author(self, uid: int) -> AuthorState | None:
        """What is known of author ``uid`` (locked for the transaction)."""
        row = await self._dao.author(uid)
        if row is None:
            return None
        return AuthorState(
            uid=row.uid, followers=row.followers, big=bool(row.big), has_pull=bool(row.has_pull)
        )

    async def save_author(self, state: AuthorState, *, now_ms: int) -> None:
        """Record ``state``."""
        await self._dao.save_author(
            state.uid, followers=state.followers, big=state.big, pull=state.has_pull, now=now_ms
        )

    async def pull_authors(self, among: Sequence[int]) -> list[int]:
        """Those of ``among`` whose events are (partly) pull."""
        return await self._dao.pull_authors(among)

    async def start_fanout(self, event_id: str, author: int, *, now_ms: int) -> None:
        """Create the fan-out job of ``event_id`` unless it exists."""
        await self._dao.start_fanout(event_id, author, now_ms)

    async def fanout(self, event_id: str, *, for_update: bool = False) -> FanoutJob | None:
        """The fan-out job of ``event_id``."""
        row = await self._dao.fanout(event_id, for_update=for_update)
        if row is None:
            return None
        return FanoutJob(
            event_id=row.event_id, author=row.author, cursor=row.cursor, done=bool(row.done)
        )

    async def advance_fanout(
        self, job: FanoutJob, *, to_cursor: int, done: bool, written: int, now_ms: int
    ) -> bool:
        """Move ``job`` past a batch; ``False`` if another worker moved it first."""
        return await self._dao.advance_fanout(
            job.event_id,
            from_cursor=job.cursor,
            to_cursor=to_cursor,
            done=done,
            written=written,
            now=now_ms,
        )

    async def unfinished_fanouts(self, limit: int) -> list[str]:
        """Events whose fan-out is not done, oldest first."""
        return await self._dao.unfinished_fanouts(limit)

    async def withdrawn_at(self, article_id: int) -> int | None:
        """When ``article_id`` was withdrawn, if it is."""
        return await self._dao.withdrawn_at(article_id)

    async def withdraw(self, article_id: int, at_ms: int) -> int:
        """Hide the article's events; how many were hidden."""
        return await self._dao.withdraw(article_id, at_ms)

    async def republish(self, article_id: int) -> None:
        """Show a withdrawn article's events again."""
        await self._dao.republish(article_id)


class SqlUnitOfWork(BaseUnitOfWork[SqlFeedRepository]):
    """One SQL transaction with a :class:`SqlFeedRepository` bound to it."""

    def open_repository(self, session: AsyncSession) -> SqlFeedRepository:
        return SqlFeedRepository(FeedDAO(session))

    @property
    def feed(self) -> SqlFeedRepository:
        """The repository bound to this transaction."""
        return self.repository
