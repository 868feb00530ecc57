"""The in-memory cache: versions order resource sets, fills overtaken by a change are
dropped, old entries miss, and hits and misses are counted."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY

from services.tag.cache import TagCache
from services.tag.domain import ResourceTags, Tag

GO = Tag(id=1, uid=7, name="go", ctime_ms=1)
PY = Tag(id=2, uid=7, name="py", ctime_ms=2)


@dataclass
class Seconds:
    """Monotonic seconds a test sets."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def resource(version: int, *tags: Tag) -> ResourceTags:
    """Article 70's set at ``version``."""
    return ResourceTags("article", 70, 7, tags, version, version * 10)


def requests(result: str) -> float:
    """The cache lookups counted so far with ``result``."""
    return REGISTRY.get_sample_value("webook_tag_cache_requests_total", {"result": result}) or 0.0


def test_a_resource_set_is_replaced_by_newer_versions_only() -> None:
    cache = TagCache(max_users=10, max_resources=10, max_age_s=60)
    cache.put_resource(resource(2, GO, PY))
    cache.put_resource(resource(1, GO))  # late
    assert cache.resource_tags("article", 70) == resource(2, GO, PY)
    cache.put_resource(resource(3))
    assert cache.resource_tags("article", 70) == resource(3)


def test_created_tags_join_cached_lists_once_and_only_those() -> None:
    cache = TagCache(max_users=10, max_resources=10, max_age_s=60)
    with cache.reserve_user(7) as fill:
        fill.put((PY,))
    cache.tag_created(GO)
    cache.tag_created(GO)
    assert cache.user_tags(7) == (GO, PY)
    cache.tag_created(Tag(id=9, uid=8, name="x", ctime_ms=1))
    assert cache.user_tags(8) is None


def test_a_fill_read_before_a_change_is_dropped() -> None:
    cache = TagCache(max_users=10, max_resources=10, max_age_s=60)
    fill = cache.reserve_user(7)
    cache.tag_created(GO)  # committed while the fill's SQL read was under way
    fill.put((PY,))
    assert cache.user_tags(7) is None
    with cache.reserve_user(7) as again:
        again.put((GO, PY))
    assert cache.user_tags(7) == (GO, PY)


def test_old_entries_miss_and_lookups_are_counted() -> None:
    clock = Seconds()
    cache = TagCache(max_users=10, max_resources=10, max_age_s=60, clock=clock)
    cache.put_resource(resource(1, GO))
    hits, misses = requests("hit"), requests("miss")
    assert cache.resource_tags("article", 70) is not None
    assert cache.resource_tags("article", 71) is None
    clock.now += 61
    assert cache.resource_tags("article", 70) is None
    assert (requests("hit") - hits, requests("miss") - misses) == (1, 2)


def test_entries_are_bounded_least_recently_used_first() -> None:
    cache = TagCache(max_users=2, max_resources=10, max_age_s=60)
    assert cache.preload({1: (), 2: ()}, []) == 2
    assert cache.user_tags(1) == ()  # 1 is now the most recently used
    with cache.reserve_user(3) as fill:
        fill.put(())
    assert cache.user_tags(2) is None
    assert cache.user_tags(1) == ()
    assert cache.size == 2
