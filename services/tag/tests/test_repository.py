"""The SQL repository on SQLite and MariaDB: set replacement and versions, paging under a
tag, the recently active users and the preload's snapshots."""

from __future__ import annotations

import pytest

from services.tag.domain import NameTaken, Tag
from services.tag.repository import SqlUnitOfWork
from services.tag.tests.conftest import T0, TagStack

pytestmark = pytest.mark.integration


async def make_tags(stack: TagStack, uid: int, *names: str, at: int = T0) -> list[Tag]:
    """Insert tags of ``uid``."""
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        tags = [await uow.tags.create_tag(uid, name, now_ms=at) for name in names]
        await uow.commit()
    return tags


async def test_a_set_is_replaced_whole_and_versioned(stack: TagStack) -> None:
    go, py, rs = await make_tags(stack, 7, "go", "py", "rs")
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        first, changed = await uow.tags.replace_resource_tags("article", 70, 7, [go, py], now_ms=T0)
        assert changed
        same, changed_again = await uow.tags.replace_resource_tags(
            "article", 70, 7, [py, go], now_ms=T0 + 1
        )
        assert not changed_again
        second, _ = await uow.tags.replace_resource_tags("article", 70, 7, [rs, py], now_ms=T0 + 2)
        await uow.commit()
    assert (first.version, [t.name for t in first.tags]) == (1, ["go", "py"])
    assert same == first
    assert (second.version, second.utime_ms) == (2, T0 + 2)
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        stored = await uow.tags.resource_tags("article", 70)
        never = await uow.tags.resource_tags("article", 71)
    assert stored == second
    assert (never.version, never.tags) == (0, ())


async def test_a_taken_name_is_reported(stack: TagStack) -> None:
    await make_tags(stack, 7, "go")
    with pytest.raises(NameTaken):
        await make_tags(stack, 7, "go")
    (other,) = await make_tags(stack, 8, "go")
    (cased,) = await make_tags(stack, 7, "Go")  # names compare exactly
    assert other.id != cased.id


async def test_resources_under_a_tag_page_newest_first(stack: TagStack) -> None:
    (go,) = await make_tags(stack, 7, "go")
    for biz_id in range(1, 6):
        async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
            await uow.tags.replace_resource_tags("article", biz_id, 7, [go], now_ms=T0 + biz_id)
            await uow.commit()
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        first = await uow.tags.tagged_under(go.id, None, 2)
        rest = await uow.tags.tagged_under(go.id, first[-1].link_id, 10)
    assert [r.biz_id for r in first] == [5, 4]
    assert [r.biz_id for r in rest] == [3, 2, 1]
    assert first[0].tagged_ms == T0 + 5


async def test_recently_active_users_and_their_snapshots(stack: TagStack) -> None:
    (old,) = await make_tags(stack, 1, "old", at=T0 - 100)
    (mid,) = await make_tags(stack, 2, "mid", at=T0)
    await make_tags(stack, 3, "new", "newer", at=T0 + 5)
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        # User 1's old tag, put on an article now: user 1 is the most recently active.
        await uow.tags.replace_resource_tags("article", 10, 1, [old], now_ms=T0 + 9)
        await uow.commit()
    async with SqlUnitOfWork(stack.sessions, stack.outbox) as uow:
        assert await uow.tags.recently_active(T0, 10) == [1, 3, 2]
        assert await uow.tags.recently_active(T0, 2) == [1, 3]
        assert await uow.tags.recently_active(T0 + 6, 10) == [1]
        snapshots = await uow.tags.snapshots([1, 2, 3])
    assert snapshots[1].tags == (old,)
    assert [(r.biz_id, r.tags, r.version) for r in snapshots[1].resources] == [(10, (old,), 1)]
    assert snapshots[1].rows == 3  # the tag, the resource, the link
    assert (snapshots[2].tags, snapshots[2].resources, snapshots[2].rows) == ((mid,), (), 1)
    assert [t.name for t in snapshots[3].tags] == ["new", "newer"]
