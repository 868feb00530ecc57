"""The tag use cases on real SQLite and MariaDB, with the article service in memory.

Covered: create (normalised, idempotent, bounded), list, attach (replace, idempotent, the
event with the full set), someone else's and a missing article refused, foreign tags
refused, paging under a tag and a bad cursor refused, the cache's preload, the cache kept
current by this replica's writes and by another replica's events.
"""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from kit.errors import AppError, ErrorKind
from kit.events import ConsumedEvent
from services.tag.errors import DOMAIN, Reason
from services.tag.events import TAGS_CHANGED, CacheUpdater, Change, decode_change
from services.tag.service import PreloadLimits
from services.tag.tests.conftest import (
    ARTICLE,
    AUTHOR,
    DAY_MS,
    OTHER,
    OTHERS_ARTICLE,
    TagStack,
)
from webook.tag.v1 import tag_pb2

pytestmark = pytest.mark.integration


async def refusal(call: Awaitable[object]) -> tuple[ErrorKind, str]:
    """The kind and reason of a call that must fail."""
    with pytest.raises(AppError) as caught:
        await call
    assert caught.value.domain == DOMAIN
    assert caught.value.message
    return caught.value.kind, caught.value.reason


async def deliver(stack: TagStack, updater: CacheUpdater, after: int = 0) -> int:
    """Hand the outbox's events after the first ``after`` to ``updater`` as the consumer
    would; how many there are in all."""
    events = await stack.events()
    batch: list[ConsumedEvent[Change]] = [
        ConsumedEvent(TAGS_CHANGED.name, 0, offset, key.encode(), 0, decode_change(value))
        for offset, (key, value) in enumerate(events)
        if offset >= after
    ]
    await updater(batch)
    return len(events)


async def test_create_list_attach_and_read(stack: TagStack) -> None:
    go, created = await stack.service.create_tag(AUTHOR, "  go ")
    assert (go.name, go.uid, created) == ("go", AUTHOR, True)
    again, created_again = await stack.service.create_tag(AUTHOR, "go")
    assert (again, created_again) == (go, False)
    py, _ = await stack.service.create_tag(AUTHOR, "py")
    assert await stack.service.list_user_tags(AUTHOR) == (go, py)

    tagged = await stack.service.attach_tags(AUTHOR, "article", ARTICLE, [py.id, go.id, go.id])
    assert (tagged.tags, tagged.version, tagged.uid) == ((go, py), 1, AUTHOR)
    same = await stack.service.attach_tags(AUTHOR, "article", ARTICLE, [go.id, py.id])
    assert same.version == 1  # idempotent: nothing changed, nothing announced
    assert await stack.service.get_resource_tags(OTHER, "article", ARTICLE) == tagged
    cleared = await stack.service.attach_tags(AUTHOR, "article", ARTICLE, [])
    assert (cleared.tags, cleared.version) == ((), 2)

    events = [tag_pb2.TagsChanged.FromString(value) for _, value in await stack.events()]
    assert [e.WhichOneof("change") for e in events] == [
        "tag_created",
        "tag_created",
        "resource_tags",
        "resource_tags",
    ]
    assert all(e.uid == AUTHOR for e in events)
    first_set = events[2].resource_tags
    assert ([t.name for t in first_set.tags], first_set.version) == (["go", "py"], 1)
    assert (events[3].resource_tags.version, len(events[3].resource_tags.tags)) == (2, 0)


async def test_refusals(stack: TagStack) -> None:
    go, _ = await stack.service.create_tag(AUTHOR, "go")
    theirs, _ = await stack.service.create_tag(OTHER, "theirs")
    service = stack.service
    assert await refusal(service.attach_tags(AUTHOR, "article", OTHERS_ARTICLE, [go.id])) == (
        ErrorKind.PERMISSION_DENIED,
        Reason.NOT_OWNER,
    )
    assert await refusal(service.attach_tags(AUTHOR, "article", 999, [go.id])) == (
        ErrorKind.NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    )
    assert await refusal(service.attach_tags(AUTHOR, "article", ARTICLE, [theirs.id])) == (
        ErrorKind.NOT_FOUND,
        Reason.NOT_FOUND,
    )
    assert await refusal(service.attach_tags(AUTHOR, "article", ARTICLE, [1, 2, 3, 4, 5, 6])) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_TAGS,
    )
    assert await refusal(service.create_tag(AUTHOR, " ")) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_NAME,
    )
    assert await refusal(service.list_user_tags(0)) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_USER,
    )
    stack.owners.down = True
    assert await refusal(service.attach_tags(AUTHOR, "article", ARTICLE, [go.id])) == (
        ErrorKind.UNAVAILABLE,
        Reason.UNAVAILABLE,
    )
    stack.limits = type(stack.limits)(per_user=2, per_resource=5)
    await service.create_tag(AUTHOR, "second")
    assert await refusal(service.create_tag(AUTHOR, "third")) == (
        ErrorKind.FAILED_PRECONDITION,
        Reason.TOO_MANY,
    )
    # Only the first and the refused third were not stored: no event for a refusal.
    assert len(await stack.events()) == 3


async def test_resources_by_tag_page_by_cursor(stack: TagStack) -> None:
    go, _ = await stack.service.create_tag(AUTHOR, "go")
    articles = [101, 102, 103]
    stack.owners.authors.update(dict.fromkeys(articles, AUTHOR))
    for article in articles:
        stack.clock.now_ms += 1
        await stack.service.attach_tags(AUTHOR, "article", article, [go.id])
    first = await stack.service.list_resources_by_tag(AUTHOR, go.id, "", 2)
    assert [r.biz_id for r in first.resources] == [103, 102]
    last = await stack.service.list_resources_by_tag(AUTHOR, go.id, first.next_cursor, 2)
    assert ([r.biz_id for r in last.resources], last.next_cursor) == ([101], "")
    assert await refusal(stack.service.list_resources_by_tag(AUTHOR, go.id, "garbage", 2)) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_CURSOR,
    )
    assert await refusal(stack.service.list_resources_by_tag(OTHER, go.id, "", 2)) == (
        ErrorKind.NOT_FOUND,
        Reason.NOT_FOUND,
    )
    assert await refusal(stack.service.list_resources_by_tag(AUTHOR, go.id, "", 101)) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_LIMIT,
    )


async def test_preload_caches_the_recently_active_users_within_budget(stack: TagStack) -> None:
    go, _ = await stack.service.create_tag(AUTHOR, "go")
    await stack.service.attach_tags(AUTHOR, "article", ARTICLE, [go.id])  # 3 rows for AUTHOR
    stack.clock.now_ms += 1
    await stack.service.create_tag(OTHER, "theirs")  # 1 row, more recent
    stack.clock.now_ms += 2 * DAY_MS
    # Replicas started now: empty caches, as after a restart.
    fresh, cache = stack.replica()
    loaded = await fresh.preload(PreloadLimits(days=3, max_users=10, max_rows=1000))
    assert (loaded.users, loaded.rows, loaded.entries) == (2, 4, 3)
    assert cache.user_tags(AUTHOR) == (go,)
    assert cache.resource_tags("article", ARTICLE) is not None

    bounded, small = stack.replica()
    budget = await bounded.preload(PreloadLimits(days=3, max_users=10, max_rows=2))
    assert (budget.users, budget.rows) == (1, 1)  # OTHER fits; AUTHOR would pass 2 rows
    assert small.user_tags(AUTHOR) is None

    idle, empty = stack.replica()
    assert (await idle.preload(PreloadLimits(days=1, max_users=10, max_rows=1000))).users == 0
    assert empty.size == 0


async def test_the_cache_follows_own_writes_and_other_replicas_events(stack: TagStack) -> None:
    go, _ = await stack.service.create_tag(AUTHOR, "go")
    other, other_cache = stack.replica()
    # Both replicas read (and cache) the author's tags and the article's empty set.
    assert await other.list_user_tags(AUTHOR) == (go,)
    assert (await other.get_resource_tags(OTHER, "article", ARTICLE)).version == 0
    assert await stack.service.list_user_tags(AUTHOR) == (go,)
    seen = await deliver(stack, CacheUpdater(other_cache))

    py, _ = await stack.service.create_tag(AUTHOR, "py")
    tagged = await stack.service.attach_tags(AUTHOR, "article", ARTICLE, [go.id, py.id])
    # This replica applied its own writes at once.
    assert stack.cache.user_tags(AUTHOR) == (go, py)
    assert stack.cache.resource_tags("article", ARTICLE) == tagged
    # The other still has its copies, until the events arrive.
    assert other_cache.user_tags(AUTHOR) == (go,)
    await deliver(stack, CacheUpdater(other_cache), after=seen)
    assert other_cache.user_tags(AUTHOR) == (go, py)
    assert other_cache.resource_tags("article", ARTICLE) == tagged
    assert await other.get_resource_tags(OTHER, "article", ARTICLE) == tagged
    # Delivered again (at least once): nothing goes back.
    await deliver(stack, CacheUpdater(other_cache))
    assert other_cache.resource_tags("article", ARTICLE) == tagged
