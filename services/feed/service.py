"""Use cases of the feed service and the ports they need.

:class:`FeedService`:

- ``article_published``: records the publication once (its id is the idempotency key) and
  decides, from the author's follower count against the live threshold
  ``big_author_followers``, how it reaches followers: **push** (a fan-out job writes it into
  every follower's inbox, a batch per transaction) or **pull** (the event row is the
  author's outbox entry, merged into followers' feeds at read time). The decision is made
  once per event and stored with it, so an author crossing the threshold in either
  direction never loses or duplicates an event: events recorded push stay in the inboxes,
  those recorded pull keep being merged (see docs/feed.md, "The switch").
- ``fan_out`` / ``resume_fanouts``: a batch's inbox rows and the job's progress (the follow
  service's cursor) commit together, with the job row locked; inbox rows are keyed by
  (owner, event id). A crash between batches resumes after the last committed batch, and a
  second worker on the same job writes nothing twice.
- ``article_liked`` / ``user_followed``: events for one recipient, written to that inbox.
- ``article_withdrawn``: hides the article's events everywhere (one statement on the event
  rows; reads skip hidden events) and remembers the withdrawal, so a late publication
  of the same article stays hidden.
- ``get_feed``: the reader's inbox merged with the outboxes of the authors they follow
  that have pull events, newest first, deduplicated by event id, keyset-paged by an
  opaque cursor (:mod:`services.feed.domain`).

Transactions aborted by a deadlock or lock timeout (:class:`kit.sql.WriteConflict`) are
retried with a jittered back-off (:func:`kit.sql.transact`) before answering
``FEED_CONCURRENT_CONFLICT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.feed import metrics
from services.feed.domain import (
    AuthorState,
    EventKind,
    FanoutJob,
    FeedEvent,
    FeedPage,
    Model,
    Position,
    check_limit,
    check_uid,
    decode_cursor,
    encode_cursor,
)
from services.feed.errors import FeedUnavailable, Reason
from services.feed.peers import Followers

logger = logging.getLogger(__name__)

T = TypeVar("T")
_WRITE_ATTEMPTS = 8
# Jobs a resume pass picks up at once.
_RESUME_BATCH = 100


class FeedRepository(Protocol):
    """Feed storage, inside one unit of work."""

    async def add_event(self, event: FeedEvent, model: Model) -> bool:
        """Store ``event`` unless its id is known; whether it is new."""
        ...

    async def event_model(self, event_id: str) -> Model | None:
        """How a stored event is delivered; ``None`` if unknown."""
        ...

    async def event(self, event_id: str) -> FeedEvent | None:
        """The stored event ``event_id``."""
        ...

    async def add_to_inboxes(self, owners: Sequence[int], event_id: str, at_ms: int) -> int:
        """Put the event in each owner's inbox once; how many rows were new."""
        ...

    async def inbox(self, owner: int, before: Position | None, limit: int) -> list[FeedEvent]:
        """A page of ``owner``'s inbox strictly after ``before``, newest first."""
        ...

    async def outbox(
        self, authors: Sequence[int], before: Position | None, limit: int
    ) -> list[FeedEvent]:
        """A page of the pull events of ``authors`` strictly after ``before``."""
        ...

    async def author(self, uid: int) -> AuthorState | None:
        """What is known of author ``uid`` (locked for the transaction)."""
        ...

    async def save_author(self, state: AuthorState, *, now_ms: int) -> None:
        """Record ``state``."""
        ...

    async def pull_authors(self, among: Sequence[int]) -> list[int]:
        """Those of ``among`` that have pull events."""
        ...

    async def start_fanout(self, event_id: str, author: int, *, now_ms: int) -> None:
        """Create the fan-out job of ``event_id`` unless it exists."""
        ...

    async def fanout(self, event_id: str, *, for_update: bool = False) -> FanoutJob | None:
        """The fan-out job of ``event_id``."""
        ...

    async def advance_fanout(
        self, job: FanoutJob, *, to_cursor: int, done: bool, written: int, now_ms: int
    ) -> bool:
        """Move ``job`` past a batch; ``False`` if it was moved by someone else."""
        ...

    async def unfinished_fanouts(self, limit: int) -> list[str]:
        """Events whose fan-out is not done, oldest first."""
        ...

    async def withdrawn_at(self, article_id: int) -> int | None:
        """When ``article_id`` was withdrawn, if it is."""
        ...

    async def withdraw(self, article_id: int, at_ms: int) -> int:
        """Hide the article's events up to ``at_ms``; how many were hidden."""
        ...

    async def republish(self, article_id: int) -> None:
        """Show a withdrawn article's events again."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def feed(self) -> FeedRepository:
        """The repository bound to this transaction."""
        ...


@dataclass(frozen=True, slots=True)
class _Recorded:
    model: Model | None
    flipped_to: bool | None


def wall_ms() -> int:
    """Wall-clock milliseconds (event times come from other processes)."""
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> FeedUnavailable:
    return FeedUnavailable(Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry")


class FeedService:
    """The feed use cases (see the module).

    Args:
        units: a new unit of work per transaction.
        followers: the follow service.
        big_author_followers: the live threshold: above it, an author's publications are
            pull (read at each publication).
        fanout_batch_size: followers per fan-out transaction (read at each batch).
        max_followees: how many of a reader's followees a read considers.
        clock: wall-clock milliseconds.
    """

    def __init__(
        self,
        units: Callable[[], UnitOfWork],
        *,
        followers: Followers,
        big_author_followers: Callable[[], int],
        fanout_batch_size: Callable[[], int],
        max_followees: int,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._units = units
        self._followers = followers
        self._threshold = big_author_followers
        self._batch = fanout_batch_size
        self._max_followees = max_followees
        self._clock = clock

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await transact(
            self._units, work, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def article_published(self, event: FeedEvent) -> Model | None:
        """Record a publication and push it if its author is ordinary; how it is
        delivered, ``None`` if it was skipped (the article was withdrawn after it).

        Raises :class:`FeedUnavailable` when the follower count cannot be read (nothing
        recorded: the consumer retries). A fan-out that fails after the event was recorded
        is left to :meth:`resume_fanouts`.
        """
        followers = await self._followers.count(event.actor)
        big = followers > self._threshold()
        now = self._clock()

        async def record(uow: UnitOfWork) -> _Recorded:
            withdrawn = await uow.feed.withdrawn_at(event.article_id)
            if withdrawn is not None:
                if withdrawn >= event.at_ms:
                    return _Recorded(None, None)
                await uow.feed.republish(event.article_id)
            before = await uow.feed.author(event.actor)
            model = Model.PULL if big else Model.PUSH
            if await uow.feed.add_event(event, model):
                if model is Model.PUSH:
                    await uow.feed.start_fanout(event.event_id, event.actor, now_ms=now)
            else:
                model = await uow.feed.event_model(event.event_id) or model
            has_pull = (before is not None and before.has_pull) or model is Model.PULL
            await uow.feed.save_author(
                AuthorState(uid=event.actor, followers=followers, big=big, has_pull=has_pull),
                now_ms=now,
            )
            flipped = before is not None and before.big != big
            return _Recorded(model, big if flipped else None)

        recorded = await self._write(record)
        if recorded.model is None:
            metrics.SKIPPED_EVENTS.labels("withdrawn").inc()
            return None
        if recorded.flipped_to is not None:
            metrics.BIG_AUTHOR_FLIPS.labels("big" if recorded.flipped_to else "ordinary").inc()
            logger.info(
                "author crossed the big-author threshold",
                extra={"author": event.actor, "followers": followers, "big": big},
            )
        if recorded.model is Model.PUSH:
            try:
                await self.fan_out(event.event_id)
            except FeedUnavailable:
                logger.warning("fan-out paused; resumed later", extra={"event_id": event.event_id})
        return recorded.model

    async def fan_out(self, event_id: str) -> int:
        """Run or continue the fan-out of ``event_id`` to its end; inbox rows written."""
        total = 0
        while True:
            async with self._units() as uow:
                job = await uow.feed.fanout(event_id)
                event = await uow.feed.event(event_id)
            if job is None or job.done or event is None:
                return total
            page = await self._followers.followers(
                job.author, cursor=job.cursor, limit=self._batch()
            )
            # A cursor that does not move would loop forever: end the job instead.
            last = page.next_cursor == 0 or page.next_cursor == job.cursor
            written = await self._write_batch(job, event, page.uids, page.next_cursor, last)
            if written is None:
                continue  # another worker moved the job: read it again
            total += written
            metrics.FANOUT_ROWS.inc(written)
            metrics.FANOUT_LAG.observe(max(0, self._clock() - event.at_ms) / 1000)
            if last:
                logger.info("fan-out done", extra={"event_id": event_id, "rows": total})

    async def _write_batch(
        self, job: FanoutJob, event: FeedEvent, owners: list[int], next_cursor: int, last: bool
    ) -> int | None:
        now = self._clock()

        async def write(uow: UnitOfWork) -> int | None:
            current = await uow.feed.fanout(job.event_id, for_update=True)
            if current is None or current.done or current.cursor != job.cursor:
                return None
            written = await uow.feed.add_to_inboxes(owners, event.event_id, event.at_ms)
            await uow.feed.advance_fanout(
                job, to_cursor=0 if last else next_cursor, done=last, written=written, now_ms=now
            )
            return written

        return await self._write(write)

    async def resume_fanouts(self) -> int:
        """Finish every unfinished fan-out (after a crash, or a follow service outage);
        inbox rows written."""
        async with self._units() as uow:
            pending = await uow.feed.unfinished_fanouts(_RESUME_BATCH)
        total = 0
        for event_id in pending:
            total += await self.fan_out(event_id)
        if pending:
            logger.info("fan-outs resumed", extra={"jobs": len(pending), "rows": total})
        return total

    async def article_liked(self, event: FeedEvent) -> bool:
        """Deliver a like to the article's author; whether it was new."""
        return await self._deliver(event)

    async def user_followed(self, event: FeedEvent) -> bool:
        """Deliver a new follower to the followee; whether it was new."""
        return await self._deliver(event)

    async def _deliver(self, event: FeedEvent) -> bool:
        if event.recipient == event.actor or event.recipient <= 0:
            metrics.SKIPPED_EVENTS.labels("self").inc()
            return False

        async def write(uow: UnitOfWork) -> int:
            if event.kind is not EventKind.USER_FOLLOWED:
                withdrawn = await uow.feed.withdrawn_at(event.article_id)
                if withdrawn is not None and withdrawn >= event.at_ms:
                    return 0
            await uow.feed.add_event(event, Model.PUSH)
            return await uow.feed.add_to_inboxes([event.recipient], event.event_id, event.at_ms)

        written = await self._write(write)
        metrics.FANOUT_ROWS.inc(written)
        return written == 1

    async def article_withdrawn(self, article_id: int, at_ms: int) -> int:
        """Hide the article's events from every feed; how many events were hidden."""
        hidden = await self._write(lambda uow: uow.feed.withdraw(article_id, at_ms))
        logger.info(
            "article withdrawn from feeds", extra={"article_id": article_id, "events": hidden}
        )
        return hidden

    async def get_feed(self, uid: int, cursor: str, limit: int) -> FeedPage:
        """A page of ``uid``'s feed after ``cursor`` (see the module)."""
        check_uid(uid)
        size = check_limit(limit)
        before = decode_cursor(cursor)
        started = time.perf_counter()
        followees = await self._followers.followees(uid, at_most=self._max_followees)
        async with self._units() as uow:
            pull = await uow.feed.pull_authors(followees)
            found = await uow.feed.inbox(uid, before, size + 1)
            if pull:
                found += await uow.feed.outbox(pull, before, size + 1)
        unique = {event.event_id: event for event in found}
        merged = sorted(unique.values(), key=lambda e: Position(e.at_ms, e.event_id), reverse=True)
        page = merged[:size]
        next_cursor = ""
        if len(merged) > size:
            next_cursor = encode_cursor(Position(page[-1].at_ms, page[-1].event_id))
        metrics.READ_SECONDS.labels("merged" if pull else "push_only").observe(
            time.perf_counter() - started
        )
        return FeedPage(events=page, next_cursor=next_cursor)
