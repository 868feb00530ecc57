"""Integration tests of the interactive service on real SQL (SQLite and MariaDB) and Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.infra import ManagedProcess
from kit.migrations import schema_drift
from services.interactive.domain import Counts, Flags
from services.interactive.repository.cache import CountsCache, counts_key, flags_key
from services.interactive.repository.dao import Base
from services.interactive.tests.stack import InteractiveStack

ARTICLE = "article"


async def stored_counts(engine: AsyncEngine, biz_id: int) -> Counts:
    """The counters row in SQL (zeros if there is none)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT read_cnt, like_cnt, collect_cnt FROM interactives "
                    "WHERE biz = :biz AND biz_id = :id"
                ),
                {"biz": ARTICLE, "id": biz_id},
            )
        ).one_or_none()
    return Counts(*row) if row else Counts()


async def cached_counts(stack: InteractiveStack, biz_id: int) -> dict[str, int]:
    """The cached hash of an article's counts (empty when not cached)."""
    raw = await stack.redis.hgetall(counts_key(ARTICLE, biz_id))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine executes inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_like_is_idempotent_and_cancel_undoes_it(interactive_stack: InteractiveStack) -> None:
    service = interactive_stack.service
    assert await service.like(ARTICLE, 1, 10) is True
    assert await service.like(ARTICLE, 1, 10) is False
    assert await service.like(ARTICLE, 1, 11) is True
    intr = await service.get(ARTICLE, 1, 10)
    assert (intr.counts.like_cnt, intr.liked, intr.collected) == (2, True, False)
    assert await service.cancel_like(ARTICLE, 1, 10) is True
    assert await service.cancel_like(ARTICLE, 1, 10) is False
    assert (await service.get(ARTICLE, 1, 10)).counts.like_cnt == 1
    assert (await service.get(ARTICLE, 1, 10)).liked is False
    assert (await stored_counts(interactive_stack.engine, 1)).like_cnt == 1


async def test_collect_counts_once_and_moves_between_collections(
    interactive_stack: InteractiveStack,
) -> None:
    service = interactive_stack.service
    assert await service.collect(ARTICLE, 2, 10, 0) is True
    assert await service.collect(ARTICLE, 2, 10, 7) is False
    intr = await service.get(ARTICLE, 2, 10)
    assert (intr.counts.collect_cnt, intr.collected) == (1, True)
    async with interactive_stack.engine.connect() as conn:
        cid = await conn.scalar(text("SELECT cid FROM user_collects WHERE uid = 10"))
    assert cid == 7
    assert await service.cancel_collect(ARTICLE, 2, 10) is True
    assert await service.cancel_collect(ARTICLE, 2, 10) is False
    assert (await service.get(ARTICLE, 2, 10)).counts.collect_cnt == 0


async def test_untouched_objects_count_zero(interactive_stack: InteractiveStack) -> None:
    service = interactive_stack.service
    assert (await service.get(ARTICLE, 404, 1)).counts == Counts()
    await service.add_reads(ARTICLE, {5: 2})
    found = await service.get_by_ids(ARTICLE, [5, 404, 5, -1])
    assert {i: intr.counts.read_cnt for i, intr in found.items()} == {5: 2, 404: 0}


async def test_a_batch_of_reads_is_one_statement(interactive_stack: InteractiveStack) -> None:
    service, engine = interactive_stack.service, interactive_stack.engine
    await service.add_reads(ARTICLE, {1: 1})
    reads = {biz_id: biz_id % 7 + 1 for biz_id in range(1, 101)}
    with statements(engine) as executed:
        await service.add_reads(ARTICLE, reads)
    writes = [s for s in executed if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 1, executed
    found = await service.get_by_ids(ARTICLE, list(reads))
    assert {i: intr.counts.read_cnt for i, intr in found.items()} == {
        **reads,
        1: reads[1] + 1,
    }


async def test_cached_counts_follow_changes_only_when_cached(
    interactive_stack: InteractiveStack,
) -> None:
    service = interactive_stack.service
    await service.like(ARTICLE, 3, 10)
    # Not cached yet: the change leaves the cache alone (no partial hash).
    assert await cached_counts(interactive_stack, 3) == {}
    assert (await service.get(ARTICLE, 3, 0)).counts == Counts(0, 1, 0)
    assert await cached_counts(interactive_stack, 3) == {
        "read_cnt": 0,
        "like_cnt": 1,
        "collect_cnt": 0,
    }
    assert await interactive_stack.redis.ttl(counts_key(ARTICLE, 3)) in range(890, 901)
    await service.add_reads(ARTICLE, {3: 5})
    await service.collect(ARTICLE, 3, 10, 0)
    await service.cancel_like(ARTICLE, 3, 10)
    assert await cached_counts(interactive_stack, 3) == {
        "read_cnt": 5,
        "like_cnt": 0,
        "collect_cnt": 1,
    }
    # Reads are served from the cache: change SQL behind its back.
    async with interactive_stack.engine.begin() as conn:
        await conn.execute(text("UPDATE interactives SET read_cnt = 999"))
    assert (await service.get(ARTICLE, 3, 0)).counts.read_cnt == 5


async def test_concurrent_toggles_by_distinct_users_leave_the_right_count(
    interactive_stack: InteractiveStack,
) -> None:
    service = interactive_stack.service
    biz_id = 42
    rng = random.Random(6)
    # Each user toggles a few times in sequence (liking twice in a row included); users run
    # concurrently. The count must equal the users whose last action was a like.
    plans = {uid: [rng.random() < 0.6 for _ in range(rng.randint(1, 4))] for uid in range(1, 101)}
    await service.get(ARTICLE, biz_id, 0)  # cached: the Lua increments are exercised too

    async def user(uid: int, actions: list[bool]) -> None:
        for like in actions:
            if like:
                await service.like(ARTICLE, biz_id, uid)
            else:
                await service.cancel_like(ARTICLE, biz_id, uid)

    await asyncio.gather(*(user(uid, actions) for uid, actions in plans.items()))
    expected = sum(1 for actions in plans.values() if actions[-1])
    assert 0 < expected < 100
    assert (await stored_counts(interactive_stack.engine, biz_id)).like_cnt == expected
    assert (await cached_counts(interactive_stack, biz_id))["like_cnt"] == expected
    assert (await service.get(ARTICLE, biz_id, 0)).counts.like_cnt == expected
    async with interactive_stack.engine.connect() as conn:
        rows = await conn.scalar(text("SELECT COUNT(*) FROM user_likes"))
    assert rows == expected
    assert [await service.like(ARTICLE, biz_id, uid) for uid in (1, 1)].count(True) <= 1


async def test_concurrent_likes_of_one_user_count_once(
    interactive_stack: InteractiveStack,
) -> None:
    service = interactive_stack.service
    results = await asyncio.gather(*(service.like(ARTICLE, 7, 10) for _ in range(10)))
    assert results.count(True) == 1
    assert (await stored_counts(interactive_stack.engine, 7)).like_cnt == 1


async def test_writes_and_reads_work_while_redis_is_down(
    interactive_stack: InteractiveStack, redis_server: ManagedProcess
) -> None:
    service = interactive_stack.service
    await service.get(ARTICLE, 8, 0)
    await asyncio.to_thread(redis_server.stop)
    try:
        await service.like(ARTICLE, 8, 10)
        await service.add_reads(ARTICLE, {8: 3})
        assert (await service.get(ARTICLE, 8, 10)).counts == Counts(3, 1, 0)
    finally:
        await asyncio.to_thread(redis_server.start)
    # Redis came back empty; counts refill from SQL.
    assert (await service.get(ARTICLE, 8, 10)).counts == Counts(3, 1, 0)


async def test_migrations_match_the_models(
    database_url: str, interactive_stack: InteractiveStack
) -> None:
    def diff(connection: Connection) -> list[object]:
        return schema_drift(connection, Base.metadata, "interactive")

    async with interactive_stack.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_cached_get_serves_flags_and_counts_without_sql(
    interactive_stack: InteractiveStack,
) -> None:
    service, engine = interactive_stack.service, interactive_stack.engine
    await service.add_reads(ARTICLE, {9: 4})
    await service.like(ARTICLE, 9, 11)
    first = await service.get(ARTICLE, 9, 10)  # loads counts and flags from SQL, caches them
    assert (first.counts, first.liked, first.collected) == (Counts(4, 1, 0), False, False)
    assert (await service.get(ARTICLE, 9, 11)).liked is True
    steps: list[tuple[Callable[[], Awaitable[bool]], Counts, bool, bool]] = [
        (lambda: service.like(ARTICLE, 9, 10), Counts(4, 2, 0), True, False),
        (lambda: service.collect(ARTICLE, 9, 10, 3), Counts(4, 2, 1), True, True),
        (lambda: service.like(ARTICLE, 9, 10), Counts(4, 2, 1), True, True),
        (lambda: service.cancel_like(ARTICLE, 9, 10), Counts(4, 1, 1), False, True),
        (lambda: service.cancel_collect(ARTICLE, 9, 10), Counts(4, 1, 0), False, False),
        (lambda: service.collect(ARTICLE, 9, 10, 0), Counts(4, 1, 1), False, True),
    ]
    for write, counts, liked, collected in steps:
        await write()
        with statements(engine) as executed:
            intr = await service.get(ARTICLE, 9, 10)
            other = await service.get(ARTICLE, 9, 11)
        assert (intr.counts, intr.liked, intr.collected) == (counts, liked, collected)
        assert (other.counts, other.liked, other.collected) == (counts, True, False)
        assert executed == []  # both answered from Redis
    anonymous = await service.get(ARTICLE, 9, 0)
    assert (anonymous.counts, anonymous.liked, anonymous.collected) == (
        Counts(4, 1, 1),
        False,
        False,
    )


async def test_flags_missing_from_the_cache_are_one_query(
    interactive_stack: InteractiveStack,
) -> None:
    service, engine = interactive_stack.service, interactive_stack.engine
    await service.like(ARTICLE, 10, 5)
    await service.get(ARTICLE, 10, 0)  # counts cached; user 6 has no cached flags
    with statements(engine) as executed:
        intr = await service.get(ARTICLE, 10, 6)
    assert (intr.liked, intr.collected) == (False, False)
    assert len(executed) == 1, executed
    # A write-through leaves one field (the like); the other is missing, so it is a miss.
    await interactive_stack.redis.delete(flags_key(ARTICLE, 10, 5))
    await service.collect(ARTICLE, 10, 5, 0)
    assert await interactive_stack.redis.hgetall(flags_key(ARTICLE, 10, 5)) == {b"collected": b"1"}
    with statements(engine) as executed:
        intr = await service.get(ARTICLE, 10, 5)
    assert (intr.liked, intr.collected) == (True, True)
    assert len(executed) == 1, executed
    assert await interactive_stack.redis.ttl(flags_key(ARTICLE, 10, 5)) in range(890, 901)


async def test_a_fill_never_overwrites_a_flag_written_through(
    interactive_stack: InteractiveStack,
) -> None:
    cache = CountsCache(interactive_stack.redis)
    # A read loaded "not liked" from SQL; meanwhile a like committed and wrote through.
    await cache.write_flags([(ARTICLE, 11, 5, "liked", True)])
    await cache.fill_flags(ARTICLE, 11, 5, Flags(liked=False, collected=False))
    assert (await cache.lookup(ARTICLE, 11, 5))[1] == Flags(liked=True, collected=False)


async def test_cached_get_falls_back_to_sql_after_a_flush(
    interactive_stack: InteractiveStack,
) -> None:
    service, engine = interactive_stack.service, interactive_stack.engine
    await service.like(ARTICLE, 12, 10)
    await service.collect(ARTICLE, 12, 10, 0)
    await service.get(ARTICLE, 12, 10)
    await interactive_stack.redis.flushdb()
    # A flush is not announced: in-process copies outlive it (at most their max age). Drop
    # them as a feed reset would, to see the Redis miss.
    interactive_stack.local.clear()
    with statements(engine) as executed:
        intr = await service.get(ARTICLE, 12, 10)
    assert (intr.counts, intr.liked, intr.collected) == (Counts(0, 1, 1), True, True)
    assert executed, "a flushed cache is read from SQL"
    await service.cancel_like(ARTICLE, 12, 10)
    with statements(engine) as executed:
        intr = await service.get(ARTICLE, 12, 10)
    assert (intr.counts, intr.liked, intr.collected) == (Counts(0, 0, 1), False, True)
    assert executed == []


async def test_flags_follow_writes_made_while_redis_was_down(
    interactive_stack: InteractiveStack, redis_server: ManagedProcess
) -> None:
    service = interactive_stack.service
    await service.like(ARTICLE, 13, 10)
    assert (await service.get(ARTICLE, 13, 10)).liked is True  # cached
    await asyncio.to_thread(redis_server.stop)
    try:
        await service.cancel_like(ARTICLE, 13, 10)
        await service.collect(ARTICLE, 13, 10, 0)
        intr = await service.get(ARTICLE, 13, 10)
        assert (intr.counts, intr.liked, intr.collected) == (Counts(0, 0, 1), False, True)
    finally:
        await asyncio.to_thread(redis_server.start)
    # Redis restarted empty: flags and counts refill from SQL, then are served from Redis.
    for _ in range(2):
        intr = await service.get(ARTICLE, 13, 10)
        assert (intr.counts, intr.liked, intr.collected) == (Counts(0, 0, 1), False, True)
    assert await interactive_stack.redis.exists(flags_key(ARTICLE, 13, 10)) == 1
