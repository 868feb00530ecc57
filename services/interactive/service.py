"""Use cases of the interactive service and the ports they need.

SQL is the truth: a counts row per object and one row per (user, object) like or collect,
unique on those three columns. A like therefore counts only if inserting the user's like row
actually inserted it, and a cancel only if deleting it actually deleted something: liking
twice counts once, and any interleaving of concurrent likes and cancels leaves
``like_cnt`` equal to the number of like rows. The flag change and the counter change share
one transaction (:class:`UnitOfWork`).

Cached counts (Redis hashes) are adjusted after the commit, and only where a hash is cached,
by the repository; a cache miss reads SQL and fills the cache. Flags a write establishes are
written through to the cached per-user flags after the commit. :meth:`InteractiveService.get`
first asks :class:`CachedReads` (one round trip) and opens a unit of work only for what is not
cached: SQL stays the truth, the cache only saves reading it.

Only what exists can be liked or collected: a like or collect names a kind of object of
:data:`~services.interactive.domain.KNOWN_BIZ` (else ``INTERACTIVE_INVALID_BIZ``) and an
object its owner says exists (:class:`Targets`; an article must be published, else
``INTERACTIVE_TARGET_NOT_FOUND``). When the owner cannot answer, the write fails closed with
``INTERACTIVE_TARGET_UNAVAILABLE`` (UNAVAILABLE, retry). With :class:`ArticleAuthors`, a like
of an article asks who wrote it instead (the same question, answered with the author), and a
like that is new, once committed, is announced to :class:`LikeEvents` (``ArticleLiked``, for
the author's feed): never a repeated like nor a cancel. Cancelling needs no such check, so
a like of a withdrawn article can still be taken back; reads are counted from the article
service's own read events (and ``IncrReadCnt``, which only it may call), so they are not
checked either beyond the known kinds.

Under concurrency MySQL may abort a transaction as a deadlock victim, and SQLite may answer
"database is locked": the repository reports both as :class:`kit.sql.WriteConflict` and the
service retries the whole unit of work a few times with jittered backoff
(:func:`kit.sql.transact`) before answering
``INTERACTIVE_CONCURRENT_CONFLICT`` (UNAVAILABLE, safe to retry: every write is idempotent
except adding reads).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from clients.article import Targets, TargetsUnavailable
from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import WriteConflict as WriteConflict
from kit.sql import transact
from services.interactive.domain import (
    ARTICLE_BIZ,
    ArticleOwner,
    Counts,
    Flags,
    Interactive,
    check_biz,
    check_biz_id,
    check_collection,
    check_known_biz,
    check_user,
    normalize_biz_ids,
)
from services.interactive.errors import InteractiveNotFound, InteractiveUnavailable, Reason

T = TypeVar("T")

WRITE_ATTEMPTS = 5
_FIRST_BACKOFF_S = 0.01


class InteractiveRepository(Protocol):
    """Counters and flags, as seen from inside one unit of work."""

    async def add_reads(self, biz: str, reads: Mapping[int, int], *, now_ms: int) -> None:
        """Add ``reads[biz_id]`` to each object's read count (one statement)."""
        ...

    async def add_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Record ``uid``'s like; ``False`` (nothing counted) if it already existed."""
        ...

    async def remove_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Remove ``uid``'s like; ``False`` (nothing counted) if there was none."""
        ...

    async def add_collect(self, biz: str, biz_id: int, uid: int, cid: int, *, now_ms: int) -> bool:
        """Put the object in ``uid``'s collection ``cid``; ``False`` if it was collected
        already (then it moves to ``cid`` and nothing is counted)."""
        ...

    async def remove_collect(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        """Take the object out of ``uid``'s collections; ``False`` if it was not in one."""
        ...

    async def counts(self, biz: str, biz_id: int) -> Counts:
        """The object's counts (cache-aside; zeros for untouched objects)."""
        ...

    async def counts_many(self, biz: str, biz_ids: Iterable[int]) -> dict[int, Counts]:
        """Counts of every requested object (cache-aside; zeros for untouched ones)."""
        ...

    async def flags(self, biz: str, biz_id: int, uid: int) -> Flags:
        """Whether ``uid`` likes the object and has it in one of its collections (one query;
        fills the cached flags)."""
        ...


class CachedReads(Protocol):
    """Reads served from the cache alone, without a unit of work."""

    async def lookup(self, biz: str, biz_id: int, uid: int) -> tuple[Counts | None, Flags | None]:
        """Cached counts of the object and, for ``uid`` > 0, cached flags of ``uid`` (one
        round trip); ``None`` for each part that is not cached or when the cache fails."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction: ``async with`` it, use :attr:`interactives`, then :meth:`commit`.

    Leaving the block without committing rolls back; cached counts change inside
    :meth:`commit`, after the database commit. Storage conflicts leave the block as
    :class:`WriteConflict`.
    """

    @property
    def interactives(self) -> InteractiveRepository:
        """The repository bound to this unit of work's transaction."""
        ...


class ArticleAuthors(Protocol):
    """The article service as the owner of liked articles, answering with the author."""

    async def published_owner(self, article_id: int) -> ArticleOwner | None:
        """Who wrote article ``article_id`` if it is published now, else ``None``.

        Raises :class:`clients.article.TargetsUnavailable` when the owner cannot be asked.
        """
        ...


class LikeEvents(Protocol):
    """Where new likes of articles are announced (:mod:`services.interactive.events`)."""

    def article_liked(self, owner: ArticleOwner, uid: int, *, at_ms: int) -> None:
        """``uid`` newly liked ``owner``'s article (called after the commit); never raises."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
Clock = Callable[[], datetime]


def _too_many_conflicts() -> InteractiveUnavailable:
    return InteractiveUnavailable(
        Reason.CONCURRENT_CONFLICT, "too many concurrent changes; try again"
    )


def _target_unavailable(biz: str, biz_id: int) -> InteractiveUnavailable:
    return InteractiveUnavailable(
        Reason.TARGET_UNAVAILABLE,
        f"cannot check that this {biz} exists now; try again",
        metadata={"biz": biz, "biz_id": str(biz_id)},
    )


def _target_not_found(biz: str, biz_id: int) -> InteractiveNotFound:
    return InteractiveNotFound(
        Reason.TARGET_NOT_FOUND,
        f"no such {biz}, or it is not published",
        metadata={"biz": biz, "biz_id": str(biz_id)},
    )


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class InteractiveService:
    """The interactive service's use cases.

    Args:
        units: makes a new :class:`UnitOfWork` per use case.
        targets: says whether a liked or collected object exists.
        clock: current time in UTC.
        cached: answers :meth:`get` from the cache when it can; without it every ``get``
            opens a unit of work.
        authors: checks a liked article and names its author (instead of ``targets``);
            without it likes announce nothing.
        like_events: where new likes of articles are announced (with ``authors``).
    """

    def __init__(
        self,
        units: UnitOfWorkFactory,
        *,
        targets: Targets,
        clock: Clock = utc_now,
        cached: CachedReads | None = None,
        authors: ArticleAuthors | None = None,
        like_events: LikeEvents | None = None,
    ) -> None:
        self._units = units
        self._targets = targets
        self._clock = clock
        self._cached = cached
        self._authors = authors
        self._like_events = like_events

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    async def _write(self, work: Callable[[InteractiveRepository], Awaitable[T]]) -> T:
        return await transact(
            self._units,
            lambda uow: work(uow.interactives),
            exhausted=_too_many_conflicts,
            attempts=WRITE_ATTEMPTS,
            first_delay=_FIRST_BACKOFF_S,
        )

    async def _require_target(self, biz: str, biz_id: int) -> None:
        try:
            found = await self._targets.exists(biz, biz_id)
        except TargetsUnavailable as exc:
            raise _target_unavailable(biz, biz_id) from exc
        if not found:
            raise _target_not_found(biz, biz_id)

    async def _require_liked_target(self, biz: str, biz_id: int) -> ArticleOwner | None:
        """Check a like's target; the article's owner when the authors port can name it."""
        if self._authors is None or biz != ARTICLE_BIZ:
            await self._require_target(biz, biz_id)
            return None
        try:
            owner = await self._authors.published_owner(biz_id)
        except TargetsUnavailable as exc:
            raise _target_unavailable(biz, biz_id) from exc
        if owner is None:
            raise _target_not_found(biz, biz_id)
        return owner

    async def add_reads(self, biz: str, reads: Mapping[int, int]) -> None:
        """Add many reads at once (``biz_id`` → how many); one SQL statement."""
        check_known_biz(biz)
        batch = {biz_id: n for biz_id, n in reads.items() if biz_id > 0 and n > 0}
        if not batch:
            return
        now_ms = self._now_ms()
        await self._write(lambda repo: repo.add_reads(biz, batch, now_ms=now_ms))

    async def incr_read(self, biz: str, biz_id: int) -> None:
        """Count one read (of a known kind of object; its only caller, the article service,
        counts reads of published articles)."""
        await self.add_reads(check_known_biz(biz), {check_biz_id(biz_id): 1})

    async def like(self, biz: str, biz_id: int, uid: int) -> bool:
        """``uid`` likes the object, which must exist; ``False`` if it already did (counted
        once)."""
        check_known_biz(biz)
        check_biz_id(biz_id)
        check_user(uid)
        owner = await self._require_liked_target(biz, biz_id)
        now_ms = self._now_ms()
        liked = await self._write(lambda repo: repo.add_like(biz, biz_id, uid, now_ms=now_ms))
        if liked and owner is not None and self._like_events is not None:
            self._like_events.article_liked(owner, uid, at_ms=now_ms)
        return liked

    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool:
        """``uid`` takes its like back, whether or not the object still exists; ``False`` if
        there was none."""
        check_biz(biz)
        check_biz_id(biz_id)
        check_user(uid)
        now_ms = self._now_ms()
        return await self._write(lambda repo: repo.remove_like(biz, biz_id, uid, now_ms=now_ms))

    async def collect(self, biz: str, biz_id: int, uid: int, cid: int) -> bool:
        """Put the object, which must exist, into ``uid``'s collection ``cid``; ``False`` if
        already collected."""
        check_known_biz(biz)
        check_biz_id(biz_id)
        check_user(uid)
        check_collection(cid)
        await self._require_target(biz, biz_id)
        now_ms = self._now_ms()
        return await self._write(
            lambda repo: repo.add_collect(biz, biz_id, uid, cid, now_ms=now_ms)
        )

    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool:
        """Take the object out of ``uid``'s collections, whether or not it still exists;
        ``False`` if it was not collected."""
        check_biz(biz)
        check_biz_id(biz_id)
        check_user(uid)
        now_ms = self._now_ms()
        return await self._write(lambda repo: repo.remove_collect(biz, biz_id, uid, now_ms=now_ms))

    async def get(self, biz: str, biz_id: int, uid: int) -> Interactive:
        """Counts of the object and, for a signed-in ``uid`` (> 0), its liked/collected flags.

        Served from the cache (process memory, else one Redis round trip) when counts (and
        flags) are cached; whatever is missing is read in one unit of work (counts
        cache-aside, both flags in one query).
        """
        check_biz(biz)
        check_biz_id(biz_id)
        signed_in = uid > 0
        counts: Counts | None = None
        flags: Flags | None = None
        if self._cached is not None:
            counts, flags = await self._cached.lookup(biz, biz_id, uid)
        if counts is None or (signed_in and flags is None):
            async with self._units() as uow:
                repo = uow.interactives
                if counts is None:
                    counts = await repo.counts(biz, biz_id)
                if signed_in and flags is None:
                    flags = await repo.flags(biz, biz_id, uid)
        if not signed_in or flags is None:
            return Interactive(biz, biz_id, counts)
        return Interactive(biz, biz_id, counts, liked=flags.liked, collected=flags.collected)

    async def get_by_ids(self, biz: str, biz_ids: Iterable[int]) -> dict[int, Interactive]:
        """Counts of up to 100 objects (zeros for untouched ones); ids ≤ 0 are ignored."""
        check_biz(biz)
        wanted = normalize_biz_ids(biz_ids)
        if not wanted:
            return {}
        async with self._units() as uow:
            counts = await uow.interactives.counts_many(biz, wanted)
        return {biz_id: Interactive(biz, biz_id, counts[biz_id]) for biz_id in wanted}
