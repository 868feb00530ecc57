"""The per-replica in-memory copy of users' tag lists and resources' tag sets.

Reads of a user's tags and of a resource's tags are answered from here when present, else
from SQL, whose answer fills the cache (:class:`TagCache`). The cache is kept current by
the changes this replica commits and by the ``TagsChanged`` events of every replica
(:mod:`services.tag.events`), both applied the same way:

- a resource's entry is its **whole** tag set with its ``version``: a change replaces it only
  when its version is higher, so repeated, late or reordered events and fills read before a
  change never bring an older set back;
- a user's entry is the whole list of the user's tags; a created tag is added to a cached
  list (tags are never deleted today), and a user who is not cached stays uncached. A fill
  whose SQL read may predate a change (:meth:`TagCache.reserve_user`) is dropped when a
  change of that user was applied while it read.

Entries older than ``max_age_s`` are misses: that bounds how long an event this replica
never received (it joins the topic at its end when it starts) can leave a copy stale.
Both maps are LRU-bounded. At start the replica preloads the recently active users
(:meth:`services.tag.service.TagService.preload`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from services.tag.domain import ResourceTags, Tag, sorted_tags
from services.tag.metrics import CACHE_ENTRIES, CACHE_REQUESTS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

ResourceKey = tuple[str, int]

_HIT: Final = CACHE_REQUESTS.labels("hit")
_MISS: Final = CACHE_REQUESTS.labels("miss")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    stored_at: float


class _Lru(Generic[K, V]):
    """Entries by key, the least recently used dropped beyond ``capacity``."""

    def __init__(self, kind: str, capacity: int) -> None:
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._capacity = capacity
        self._size = CACHE_ENTRIES.labels(kind)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> _Entry[V] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: K, value: V, now: float) -> None:
        self._entries[key] = _Entry(value, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        self._size.set(len(self._entries))

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)
        self._size.set(len(self._entries))


class UserFill:
    """A fill of one user's list in progress: :meth:`put` what SQL answered (dropped if a
    change of the user was applied meanwhile); always :meth:`release` (``with`` does)."""

    def __init__(self, cache: TagCache, uid: int) -> None:
        self._cache = cache
        self.uid = uid
        self._released = False

    def put(self, tags: tuple[Tag, ...]) -> None:
        """Cache the list read from SQL, unless a change of the user overtook the read."""
        self._cache._finish_fill(self, tags)
        self._released = True

    def release(self) -> None:
        """Give up the fill (the read failed)."""
        if not self._released:
            self._cache._finish_fill(self, None)
            self._released = True

    def __enter__(self) -> UserFill:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class TagCache:
    """Users' tag lists and resources' tag sets of this replica (see the module).

    Args:
        max_users / max_resources: entries kept at most of each kind.
        max_age_s: entries older than this are misses.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        max_users: int,
        max_resources: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users: _Lru[int, tuple[Tag, ...]] = _Lru("user", max_users)
        self._resources: _Lru[ResourceKey, ResourceTags] = _Lru("resource", max_resources)
        self._max_age = max_age_s
        self._clock = clock
        # uid → fills of it in progress; uids changed while one was in progress.
        self._filling: dict[int, int] = {}
        self._overtaken: set[int] = set()

    @property
    def size(self) -> int:
        """Entries held now (users and resources)."""
        return len(self._users) + len(self._resources)

    def _fresh(self, entry: _Entry[V] | None) -> V | None:
        if entry is None or self._clock() - entry.stored_at > self._max_age:
            _MISS.inc()
            return None
        _HIT.inc()
        return entry.value

    def user_tags(self, uid: int) -> tuple[Tag, ...] | None:
        """``uid``'s tags (by name) if cached and fresh; counts a hit or a miss."""
        return self._fresh(self._users.get(uid))

    def resource_tags(self, biz: str, biz_id: int) -> ResourceTags | None:
        """A resource's tag set if cached and fresh; counts a hit or a miss."""
        return self._fresh(self._resources.get((biz, biz_id)))

    def reserve_user(self, uid: int) -> UserFill:
        """Start a fill of ``uid``'s list: take it before reading SQL."""
        self._filling[uid] = self._filling.get(uid, 0) + 1
        return UserFill(self, uid)

    def _finish_fill(self, fill: UserFill, tags: tuple[Tag, ...] | None) -> None:
        uid = fill.uid
        overtaken = uid in self._overtaken
        left = self._filling.get(uid, 1) - 1
        if left <= 0:
            self._filling.pop(uid, None)
            self._overtaken.discard(uid)
        else:
            self._filling[uid] = left
        if tags is not None and not overtaken:
            self._users.put(uid, sorted_tags(tags), self._clock())

    def put_resource(self, resource: ResourceTags) -> None:
        """Cache a resource's set read from SQL or changed (kept only if newer)."""
        key = (resource.biz, resource.biz_id)
        cached = self._resources.get(key)
        if cached is not None and cached.value.version > resource.version:
            return
        if cached is not None and cached.value.version == resource.version:
            cached.stored_at = self._clock()  # the same state confirmed: fresh again
            return
        self._resources.put(key, resource, self._clock())

    def tag_created(self, tag: Tag) -> None:
        """Apply a new tag (this replica's or an event's; repeats change nothing)."""
        if tag.uid in self._filling:
            self._overtaken.add(tag.uid)
        cached = self._users.get(tag.uid)
        if cached is None:
            return
        if any(known.id == tag.id for known in cached.value):
            return
        if self._clock() - cached.stored_at > self._max_age:
            self._users.drop(tag.uid)  # stale already: the next read refills it whole
            return
        cached.value = sorted_tags((*cached.value, tag))

    def preload(self, users: dict[int, tuple[Tag, ...]], resources: list[ResourceTags]) -> int:
        """Install what the start-up preload read; how many entries it added."""
        now = self._clock()
        for uid, tags in users.items():
            self._users.put(uid, sorted_tags(tags), now)
        for resource in resources:
            self.put_resource(resource)
        return len(users) + len(resources)
