"""Use cases of the tag service and the ports they need.

:class:`TagService`:

- ``create_tag``: a user's new tag (the name normalised, :func:`services.tag.domain.tag_name`);
  the same name again answers the existing tag (idempotent). At most ``per_user`` tags per
  user (checked in the transaction; concurrent creates may pass it by a few).
- ``attach_tags``: replaces the tag set of a resource. The caller must be the article's
  author (asked of the article service: someone else's article is ``TAG_NOT_OWNER``, a
  missing one ``TAG_TARGET_NOT_FOUND``) and own every tag (``TAG_NOT_FOUND`` otherwise). The
  same set again changes nothing and records no event.
- ``list_user_tags`` / ``get_resource_tags``: from this replica's cache
  (:class:`~services.tag.cache.TagCache`), else SQL, whose answer fills the cache;
- ``list_resources_by_tag``: one of the caller's tags' resources, newest tagging first, by
  opaque cursor (always SQL: pages of a tag are read rarely and would churn the cache).
- ``list_tag_sets``: every tag set of one kind of resource, in id order (SQL; for the
  search service's rebuild, which the caller check admits alone: no user is involved).
- ``preload``: at start, the recently active users' tags and resources into the cache.

Every change records ``TagsChanged`` in the outbox in its transaction and, once committed,
is applied to this replica's cache the way other replicas apply the event.
Transactions aborted by a deadlock or lock timeout (:class:`kit.sql.WriteConflict`) are
retried with a jittered back-off (:func:`kit.sql.transact`) before answering
``TAG_CONCURRENT_CONFLICT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.tag.cache import TagCache
from services.tag.domain import (
    ARTICLE_BIZ,
    NameTaken,
    ResourceTags,
    Tag,
    TaggedResource,
    TagLimits,
    UserSnapshot,
    check_after_id,
    check_biz,
    check_resource,
    check_tag_id,
    check_uid,
    decode_cursor,
    encode_cursor,
    page_size,
    tag_name,
    tag_set,
)
from services.tag.errors import (
    Reason,
    TagFailedPrecondition,
    TagNotFound,
    TagPermissionDenied,
    TagUnavailable,
)
from services.tag.metrics import PRELOAD_ENTRIES, PRELOAD_ROWS, PRELOAD_SECONDS
from services.tag.peers import ArticleOwners

logger = logging.getLogger(__name__)

T = TypeVar("T")
_WRITE_ATTEMPTS = 8
_PRELOAD_CHUNK = 500
_DAY_MS = 86_400_000


class TagRepository(Protocol):
    """Tags, resources and their links, inside one unit of work."""

    async def create_tag(self, uid: int, name: str, *, now_ms: int) -> Tag:
        """Insert a tag; :class:`NameTaken` if ``uid`` has one of that name."""
        ...

    async def tag_named(self, uid: int, name: str) -> Tag | None:
        """``uid``'s tag called ``name``."""
        ...

    async def count_tags(self, uid: int) -> int:
        """How many tags ``uid`` owns."""
        ...

    async def user_tags(self, uid: int) -> tuple[Tag, ...]:
        """``uid``'s tags, by name."""
        ...

    async def tags_by_id(self, tag_ids: Collection[int]) -> list[Tag]:
        """The tags of these ids that exist (anyone's)."""
        ...

    async def tag(self, tag_id: int) -> Tag | None:
        """Tag ``tag_id``."""
        ...

    async def replace_resource_tags(
        self, biz: str, biz_id: int, uid: int, tags: Collection[Tag], *, now_ms: int
    ) -> tuple[ResourceTags, bool]:
        """Make ``tags`` the resource's whole set; the set after and whether it changed."""
        ...

    async def resource_tags(self, biz: str, biz_id: int) -> ResourceTags:
        """The resource's tag set (version 0 if never tagged)."""
        ...

    async def tagged_under(
        self, tag_id: int, before_link: int | None, limit: int
    ) -> list[TaggedResource]:
        """Resources under a tag, newest tagging first, after a position."""
        ...

    async def tag_sets_after(self, biz: str, after_biz_id: int, limit: int) -> list[ResourceTags]:
        """Tag sets of resources of ``biz`` with ids above ``after_biz_id``, in id order."""
        ...

    async def recently_active(self, since_ms: int, limit: int) -> list[int]:
        """Users with tag changes since ``since_ms``, most recent first."""
        ...

    async def snapshots(self, uids: Collection[int]) -> dict[int, UserSnapshot]:
        """What the preload caches of each user."""
        ...


class TagEvents(Protocol):
    """The events of a transaction (recorded if and only if it commits)."""

    def tag_created(self, tag: Tag) -> None:
        """Record a new tag."""
        ...

    def resource_changed(self, resource: ResourceTags) -> None:
        """Record a resource's new tag set."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def tags(self) -> TagRepository:
        """The repository bound to this transaction."""
        ...

    @property
    def events(self) -> TagEvents:
        """The events bound to this transaction."""
        ...


@dataclass(frozen=True, slots=True)
class PreloadLimits:
    """Which users the start-up preload caches: those with tag changes in the last
    ``days`` days, the most recent first, at most ``max_users`` of them and ``max_rows``
    SQL rows (tags, resources and links) in all."""

    days: float
    max_users: int
    max_rows: int


@dataclass(frozen=True, slots=True)
class Preloaded:
    """What a preload cached."""

    users: int
    entries: int
    rows: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ResourcePage:
    """A page of resources under a tag; ``next_cursor`` empty on the last."""

    resources: list[TaggedResource]
    next_cursor: str


def wall_ms() -> int:
    """Wall-clock milliseconds (rows compare times across processes)."""
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> TagUnavailable:
    return TagUnavailable(Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry")


class TagService:
    """The tag use cases (see the module).

    Args:
        units: a new unit of work per transaction.
        owners: who owns articles.
        cache: this replica's in-memory cache.
        limits: the tags per user and per resource allowed (read at each change).
        clock: wall-clock milliseconds.
    """

    def __init__(
        self,
        units: Callable[[], UnitOfWork],
        *,
        owners: ArticleOwners,
        cache: TagCache,
        limits: Callable[[], TagLimits],
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._units = units
        self._owners = owners
        self._cache = cache
        self._limits = limits
        self._clock = clock

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await transact(
            self._units, work, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def create_tag(self, uid: int, raw_name: str) -> tuple[Tag, bool]:
        """``uid``'s tag named ``raw_name`` (normalised) and whether this call created it."""
        check_uid(uid)
        name = tag_name(raw_name)
        per_user = self._limits().per_user
        now = self._clock()

        async def create(uow: UnitOfWork) -> tuple[Tag, bool]:
            existing = await uow.tags.tag_named(uid, name)
            if existing is not None:
                return existing, False
            if await uow.tags.count_tags(uid) >= per_user:
                raise TagFailedPrecondition(
                    Reason.TOO_MANY,
                    f"a user may have at most {per_user} tags",
                    metadata={"max": str(per_user)},
                )
            tag = await uow.tags.create_tag(uid, name, now_ms=now)
            uow.events.tag_created(tag)
            return tag, True

        try:
            tag, created = await self._write(create)
        except NameTaken:
            # A concurrent create of the same name committed first: answer its tag.
            async with self._units() as uow:
                found = await uow.tags.tag_named(uid, name)
            if found is None:
                raise
            return found, False
        if created:
            self._cache.tag_created(tag)
            logger.info("tag created", extra={"uid": uid, "tag_id": tag.id})
        return tag, created

    async def list_user_tags(self, uid: int) -> tuple[Tag, ...]:
        """``uid``'s tags, by name."""
        check_uid(uid)
        cached = self._cache.user_tags(uid)
        if cached is not None:
            return cached
        with self._cache.reserve_user(uid) as fill:
            async with self._units() as uow:
                tags = await uow.tags.user_tags(uid)
            fill.put(tags)
        return tags

    async def attach_tags(
        self, uid: int, biz: str, biz_id: int, tag_ids: Collection[int]
    ) -> ResourceTags:
        """Make ``tag_ids`` (``uid``'s tags) the whole tag set of ``uid``'s resource."""
        check_uid(uid)
        check_resource(biz, biz_id)
        wanted = tag_set(list(tag_ids), self._limits().per_resource)
        await self._check_owner(uid, biz, biz_id)
        now = self._clock()

        async def replace(uow: UnitOfWork) -> tuple[ResourceTags, bool]:
            tags = await uow.tags.tags_by_id(wanted)
            owned = [tag for tag in tags if tag.uid == uid]
            if len(owned) != len(wanted):
                missing = sorted(wanted - {tag.id for tag in owned})
                raise TagNotFound(
                    Reason.NOT_FOUND,
                    f"no tags {missing} among yours",
                    metadata={"field": "tag_ids", "ids": ",".join(map(str, missing))},
                )
            resource, changed = await uow.tags.replace_resource_tags(
                biz, biz_id, uid, owned, now_ms=now
            )
            if changed:
                uow.events.resource_changed(resource)
            return resource, changed

        resource, changed = await self._write(replace)
        self._cache.put_resource(resource)
        if changed:
            logger.info(
                "resource retagged",
                extra={
                    "uid": uid,
                    "biz": biz,
                    "biz_id": biz_id,
                    "tags": len(resource.tags),
                    "version": resource.version,
                },
            )
        return resource

    async def _check_owner(self, uid: int, biz: str, biz_id: int) -> None:
        if biz != ARTICLE_BIZ:  # check_resource admits articles only today
            raise TagPermissionDenied(Reason.NOT_OWNER, f"{biz} cannot be tagged")
        author = await self._owners.author_of(biz_id)
        if author is None:
            raise TagNotFound(
                Reason.TARGET_NOT_FOUND,
                f"article {biz_id} does not exist or is not published",
                metadata={"field": "biz_id"},
            )
        if author != uid:
            raise TagPermissionDenied(
                Reason.NOT_OWNER,
                "only the article's author may tag it",
                metadata={"field": "biz_id"},
            )

    async def get_resource_tags(self, uid: int, biz: str, biz_id: int) -> ResourceTags:
        """The tag set of ``(biz, biz_id)`` as user ``uid`` reads it (version 0 and no tags:
        never tagged)."""
        check_uid(uid)
        check_resource(biz, biz_id)
        cached = self._cache.resource_tags(biz, biz_id)
        if cached is not None:
            return cached
        async with self._units() as uow:
            resource = await uow.tags.resource_tags(biz, biz_id)
        # Kept only if no newer set was applied while SQL answered (versions order them).
        self._cache.put_resource(resource)
        return resource

    async def list_tag_sets(self, biz: str, after_biz_id: int, limit: int) -> list[ResourceTags]:
        """A page of every tag set of ``biz``: the resources with ids above ``after_biz_id``,
        in id order; a page shorter than the size asked for is the last."""
        check_biz(biz)
        check_after_id(after_biz_id)
        size = page_size(limit)
        async with self._units() as uow:
            return await uow.tags.tag_sets_after(biz, after_biz_id, size)

    async def list_resources_by_tag(
        self, uid: int, tag_id: int, cursor: str, limit: int
    ) -> ResourcePage:
        """A page of the resources under ``uid``'s tag ``tag_id``, newest tagging first."""
        check_uid(uid)
        check_tag_id(tag_id)
        size = page_size(limit)
        before = decode_cursor(cursor, tag_id)
        async with self._units() as uow:
            tag = await uow.tags.tag(tag_id)
            if tag is None or tag.uid != uid:
                raise TagNotFound(
                    Reason.NOT_FOUND, f"no tag {tag_id} among yours", metadata={"field": "tag_id"}
                )
            found = await uow.tags.tagged_under(tag_id, before, size + 1)
        page = found[:size]
        more = len(found) > size
        return ResourcePage(
            resources=page, next_cursor=encode_cursor(tag_id, page[-1].link_id) if more else ""
        )

    async def preload(self, limits: PreloadLimits) -> Preloaded:
        """Cache the tags and resources of the recently active users (see
        :class:`PreloadLimits`); whole users only, stopping at the first that would pass
        ``max_rows``."""
        started = time.monotonic()
        since = self._clock() - int(limits.days * _DAY_MS)
        async with self._units() as uow:
            uids = await uow.tags.recently_active(since, limits.max_users)
        rows = 0
        full = False
        chosen: list[tuple[int, UserSnapshot]] = []
        for start in range(0, len(uids), _PRELOAD_CHUNK):
            chunk = uids[start : start + _PRELOAD_CHUNK]
            async with self._units() as uow:
                snapshots = await uow.tags.snapshots(chunk)
            for uid in chunk:
                snapshot = snapshots[uid]
                if rows + snapshot.rows > limits.max_rows:
                    full = True
                    break
                rows += snapshot.rows
                chosen.append((uid, snapshot))
            if full:
                break
        # The least recently active first: should the cache be smaller than the preload, the
        # most recently active are the ones it keeps.
        entries = sum(
            self._cache.preload({uid: snapshot.tags}, list(snapshot.resources))
            for uid, snapshot in reversed(chosen)
        )
        users = len(chosen)
        seconds = time.monotonic() - started
        PRELOAD_ENTRIES.set(entries)
        PRELOAD_ROWS.set(rows)
        PRELOAD_SECONDS.set(seconds)
        logger.info(
            "tag cache preloaded",
            extra={
                "users": users,
                "active_users": len(uids),
                "entries": entries,
                "rows": rows,
                "row_budget_reached": full,
                "seconds": round(seconds, 3),
            },
        )
        return Preloaded(users=users, entries=entries, rows=rows, seconds=seconds)
