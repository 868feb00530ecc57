"""Storage adapters of the tag service: SQL, with the events in a transactional outbox.

- :class:`SqlTagRepository` implements :class:`services.tag.service.TagRepository`;
- :class:`SqlUnitOfWork` implements :class:`services.tag.service.UnitOfWork`: the
  repository and the events (:class:`services.tag.events.TagEventWriter` on the
  ``tag_outbox`` table) share its transaction; deadlocks and lock timeouts leave it as
  :class:`kit.sql.WriteConflict` (retried by the service).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import SessionFactory, is_unique_violation, row_mapper
from kit.sql import SqlUnitOfWork as BaseUnitOfWork
from services.tag.domain import (
    NameTaken,
    ResourceTags,
    Tag,
    TaggedResource,
    UserSnapshot,
    sorted_tags,
)
from services.tag.events import OUTBOX_TOPICS, TagEventWriter
from services.tag.repository.dao import LinkRow, ResourceRow, TagDAO, TagOutboxRow, TagRow

__all__ = ["SqlTagRepository", "SqlUnitOfWork", "tag_outbox"]

_tag = row_mapper(Tag, TagRow, renamed={"ctime_ms": "ctime"})


def tag_outbox() -> Outbox:
    """The outbox of the tag service's events (``tag_outbox``, declared topics only)."""
    return Outbox(TagOutboxRow, topics=OUTBOX_TOPICS)


def _resource(row: ResourceRow, tags: Iterable[Tag]) -> ResourceTags:
    return ResourceTags(
        biz=row.biz,
        biz_id=row.biz_id,
        uid=row.uid,
        tags=sorted_tags(tuple(tags)),
        version=row.version,
        utime_ms=row.utime,
    )


def untagged(biz: str, biz_id: int) -> ResourceTags:
    """The tag set of a resource never tagged (version 0)."""
    return ResourceTags(biz=biz, biz_id=biz_id, uid=0, tags=(), version=0, utime_ms=0)


class SqlTagRepository:
    """Tags in SQL, inside one unit of work's session."""

    def __init__(self, dao: TagDAO) -> None:
        self._dao = dao

    async def create_tag(self, uid: int, name: str, *, now_ms: int) -> Tag:
        """Insert a tag; :class:`NameTaken` if ``uid`` has one of that name."""
        try:
            return _tag(await self._dao.insert_tag(uid, name, now_ms))
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise NameTaken(name) from exc
            raise

    async def tag_named(self, uid: int, name: str) -> Tag | None:
        """``uid``'s tag called ``name``."""
        row = await self._dao.tag_named(uid, name)
        return None if row is None else _tag(row)

    async def count_tags(self, uid: int) -> int:
        """How many tags ``uid`` owns."""
        return await self._dao.count_tags(uid)

    async def user_tags(self, uid: int) -> tuple[Tag, ...]:
        """``uid``'s tags, by name."""
        return sorted_tags([_tag(row) for row in await self._dao.user_tags([uid])])

    async def tags_by_id(self, tag_ids: Collection[int]) -> list[Tag]:
        """The tags of these ids that exist (anyone's)."""
        return [_tag(row) for row in await self._dao.tags_by_id(tag_ids)]

    async def replace_resource_tags(
        self, biz: str, biz_id: int, uid: int, tags: Collection[Tag], *, now_ms: int
    ) -> tuple[ResourceTags, bool]:
        """Make ``tags`` the resource's whole set; the set after, and whether it changed
        (then its version went up by one). Concurrent replacements serialise on the
        resource's row."""
        wanted = {tag.id for tag in tags}
        row = await self._dao.resource(biz, biz_id, for_update=True)
        current = await self._dao.resource_tag_ids(biz, biz_id) if row is not None else set()
        if current == wanted:
            if row is None:
                return untagged(biz, biz_id), False
            return _resource(row, tags), False
        if row is None:
            row = await self._dao.claim_resource(biz, biz_id, uid, now_ms)
        await self._dao.unlink(current - wanted, biz, biz_id)
        await self._dao.link(wanted - current, uid, biz, biz_id, now_ms)
        await self._dao.bump(row, now_ms)
        return _resource(row, tags), True

    async def resource_tags(self, biz: str, biz_id: int) -> ResourceTags:
        """The resource's tag set (version 0 if never tagged)."""
        row = await self._dao.resource(biz, biz_id)
        if row is None:
            return untagged(biz, biz_id)
        return _resource(row, (_tag(tag) for tag in await self._dao.resource_tags(biz, biz_id)))

    async def tag_sets_after(self, biz: str, after_biz_id: int, limit: int) -> list[ResourceTags]:
        """Up to ``limit`` tag sets of resources of ``biz`` with ids above ``after_biz_id``,
        in id order (two queries a page: the resources, then the tags on them)."""
        rows = await self._dao.resources_after(biz, after_biz_id, limit)
        tags_on: dict[int, list[Tag]] = defaultdict(list)
        for biz_id, tag in await self._dao.tags_on(biz, [row.biz_id for row in rows]):
            tags_on[biz_id].append(_tag(tag))
        return [_resource(row, tags_on.get(row.biz_id, ())) for row in rows]

    async def tag(self, tag_id: int) -> Tag | None:
        """Tag ``tag_id``."""
        row = await self._dao.get_row(TagRow, tag_id)
        return None if row is None else _tag(row)

    async def tagged_under(
        self, tag_id: int, before_link: int | None, limit: int
    ) -> list[TaggedResource]:
        """Up to ``limit`` resources under tag ``tag_id``, newest tagging first, after the
        position ``before_link`` (a link id; ``None``: from the newest)."""
        rows = await self._dao.links_under(tag_id, before_link, limit)
        return [
            TaggedResource(link_id=r.id, biz=r.biz, biz_id=r.biz_id, tagged_ms=r.ctime)
            for r in rows
        ]

    async def recently_active(self, since_ms: int, limit: int) -> list[int]:
        """Up to ``limit`` users with tag changes since ``since_ms``, most recent first."""
        return await self._dao.recently_active(since_ms, limit)

    async def snapshots(self, uids: Collection[int]) -> dict[int, UserSnapshot]:
        """What the preload caches of each of the users ``uids``."""
        tags_of: dict[int, list[Tag]] = defaultdict(list)
        by_id: dict[int, Tag] = {}
        for row in await self._dao.user_tags(uids):
            tag = _tag(row)
            tags_of[tag.uid].append(tag)
            by_id[tag.id] = tag
        links: list[LinkRow] = list(await self._dao.user_links(uids))
        tags_on: dict[tuple[str, int], list[Tag]] = defaultdict(list)
        for link in links:
            if link.tag_id in by_id:
                tags_on[(link.biz, link.biz_id)].append(by_id[link.tag_id])
        resources_of: dict[int, list[ResourceTags]] = defaultdict(list)
        rows_of: dict[int, int] = defaultdict(int)
        for link in links:
            rows_of[link.uid] += 1
        for resource in await self._dao.user_resources(uids):
            resources_of[resource.uid].append(
                _resource(resource, tags_on.get((resource.biz, resource.biz_id), ()))
            )
            rows_of[resource.uid] += 1
        return {
            uid: UserSnapshot(
                tags=sorted_tags(tags_of.get(uid, [])),
                resources=tuple(resources_of.get(uid, [])),
                rows=rows_of.get(uid, 0) + len(tags_of.get(uid, [])),
            )
            for uid in uids
        }


class SqlUnitOfWork(BaseUnitOfWork[SqlTagRepository]):
    """One SQL transaction with a :class:`SqlTagRepository` and the events bound to it."""

    def __init__(self, sessions: SessionFactory, outbox: Outbox) -> None:
        super().__init__(sessions)
        self._outbox = outbox
        self._events: TagEventWriter | None = None

    def open_repository(self, session: AsyncSession) -> SqlTagRepository:
        self._events = TagEventWriter(self._outbox.bound(session))
        return SqlTagRepository(TagDAO(session))

    @property
    def tags(self) -> SqlTagRepository:
        """The repository bound to this transaction."""
        return self.repository

    @property
    def events(self) -> TagEventWriter:
        """``TagsChanged``, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events
