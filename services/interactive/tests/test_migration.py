"""The interactive tables moved to a second database with kit.migrator, on two scratch MariaDB
databases and the session's broker.

The service's real layers (``InteractiveService`` over :class:`MigratingUnitOfWork`, the Redis
counts cache) in each of the four modes; the mode switched back and forth while requests run,
each request seeing one mode; requests held at the ``switching`` barrier, run in the mode
switched to, or failed UNAVAILABLE past their bound; and destination writes that failed,
found by a full validation and repaired by the fixer until a validation finds nothing and
both databases hold the same rows. The databases are made by the service's ``migrate``
command, which upgrades the destination too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clients.tests.articles import FakeTargets
from kit.config import Mode as ProcessMode
from kit.errors import ErrorKind
from kit.events import EventProducer
from kit.events.tests.support import consumer_config, producer_config, unique
from kit.migrator import (
    CheckpointStore,
    DifferenceSink,
    Direction,
    DoubleWriter,
    Fixer,
    HostedFixer,
    HostedMigration,
    KafkaDifferenceSink,
    Key,
    MigratedTable,
    Mode,
    ModeHolder,
    ModeSwitching,
    Row,
    Sessions,
    Sides,
    Validation,
    Validator,
    ValidatorConfig,
)
from kit.migrator.tests.support import FlakySessions
from kit.sql import (
    create_database,
    create_engine,
    database_url,
    drop_database,
    mysql_test_server,
    session_factory,
)
from services.interactive.__main__ import migrate_databases
from services.interactive.domain import Counts
from services.interactive.repository.cache import CountsCache
from services.interactive.repository.migration import TABLES, MigratingUnitOfWork
from services.interactive.service import InteractiveService, UnitOfWork
from services.interactive.settings import InteractiveSettings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

# A loaded two-core machine: bounds a hang only; conditions are polled, never slept on.
WAIT_S = 90.0
BIZ = "article"


@dataclass
class Databases:
    """The migration's two databases, migrated by the service's ``migrate`` command."""

    sides: Sides
    engines: tuple[AsyncEngine, AsyncEngine]


@pytest.fixture
async def databases() -> AsyncIterator[Databases]:
    prefix = f"webook_interactive_mig_{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}_source", f"{prefix}_destination"]
    for name in names:
        await create_database(mysql_test_server(), name)
    urls = [database_url(mysql_test_server(), name) for name in names]
    try:
        settings = InteractiveSettings(
            mode=ProcessMode.TEST, database_url=urls[0], migration_destination_url=urls[1]
        )
        await asyncio.to_thread(migrate_databases, settings, argparse.Namespace())
        source, destination = create_engine(urls[0]), create_engine(urls[1])
        try:
            yield Databases(
                Sides(session_factory(source), session_factory(destination)),
                (source, destination),
            )
        finally:
            await source.dispose()
            await destination.dispose()
    finally:
        for name in names:
            await drop_database(mysql_test_server(), name)


def service_over(writer: DoubleWriter, redis: aioredis.Redis) -> InteractiveService:
    cache = CountsCache(redis)
    return InteractiveService(
        lambda: MigratingUnitOfWork(writer, cache), targets=FakeTargets(), cached=cache
    )


async def rows_of(sessions: Sessions, table: MigratedTable) -> dict[Key, Row]:
    async with sessions() as session:
        result = await session.execute(select(table.table))
        return {table.key_of(row): table.image(row) for row in result.mappings()}


async def tables_of(sessions: Sessions) -> dict[str, dict[Key, Row]]:
    """Every row of the service's tables on one side, by table and key."""
    return {table.name: await rows_of(sessions, table) for table in TABLES}


async def test_the_migrate_command_gives_the_destination_the_schema_and_checkpoints(
    databases: Databases,
) -> None:
    async with databases.sides.destination() as session:
        found = {row[0] for row in await session.execute(text("SHOW TABLES"))}
    assert {table.name for table in TABLES} | {"migrator_checkpoints"} <= found
    assert "alembic_version_interactive" in found


async def test_each_mode_writes_its_first_side_reads_it_and_copies_to_the_second(
    databases: Databases, redis_client: aioredis.Redis
) -> None:
    holder = ModeHolder(unique("interactive-modes"))
    service = service_over(DoubleWriter(databases.sides, holder, TABLES), redis_client)
    sides = databases.sides
    for step, mode in enumerate(m for m in Mode if m is not Mode.SWITCHING):
        holder.set(mode, force=True)
        biz_id, uid = 100 + step, 7
        assert await service.like(BIZ, biz_id, uid)
        assert await service.collect(BIZ, biz_id, uid, 3)
        await service.add_reads(BIZ, {biz_id: 2})
        assert await service.like(BIZ, 900, uid + step)  # one row changed in every mode
        got = await service.get(BIZ, biz_id, uid)
        assert got.counts == Counts(read_cnt=2, like_cnt=1, collect_cnt=1)
        assert got.liked
        assert got.collected

        first, second = sides.of(mode.first), sides.of(mode.first.other)
        on_first, on_second = await tables_of(first), await tables_of(second)
        mine = {
            name: {k: r for k, r in rows.items() if r.get("biz_id") == biz_id}
            for name, rows in on_first.items()
        }
        assert all(len(rows) == 1 for rows in mine.values()), mine
        for name, rows in mine.items():
            for key, row in rows.items():
                if mode.second is None:
                    assert key not in on_second[name], (mode, name)
                else:
                    assert on_second[name].get(key) == row, (mode, name)

    # A cancel in destination_only deletes there only.
    assert await service.cancel_like(BIZ, 103, 7)
    assert (await service.get(BIZ, 103, 7)).counts.like_cnt == 0
    source_likes = await rows_of(sides.source, TABLES[1])
    destination_likes = await rows_of(sides.destination, TABLES[1])
    assert not [r for r in destination_likes.values() if r["biz_id"] == 103]
    assert not [r for r in source_likes.values() if r["biz_id"] == 103]  # never copied there


async def test_a_mode_switched_while_requests_run_is_read_once_per_request(
    databases: Databases, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    modes = itertools.cycle([Mode.SOURCE_ONLY, Mode.SOURCE_FIRST])
    current = {"mode": next(modes)}
    reads: list[Mode] = []

    def live_mode() -> Mode:
        # Every read switches the mode: each request runs while the mode in force is the
        # other one (or has changed several times) until it ends.
        mode = current["mode"]
        reads.append(mode)
        current["mode"] = next(modes)
        return mode

    holder = ModeHolder(unique("interactive-switch"))
    holder.follow(live_mode)
    reads.clear()
    writer = DoubleWriter(databases.sides, holder, TABLES)
    cache = CountsCache(redis_client)
    begun = 0

    def units() -> UnitOfWork:
        nonlocal begun
        begun += 1
        return MigratingUnitOfWork(writer, cache)

    service = InteractiveService(units, targets=FakeTargets(), cached=cache)
    requests = 120
    gate = asyncio.Semaphore(8)

    async def like(i: int) -> bool:
        async with gate:
            return await service.like(BIZ, 1000 + i, 50 + i)

    assert all(await asyncio.gather(*(like(i) for i in range(requests))))
    # One read of the mode per unit of work, at its start (retries are new units of work).
    assert len(reads) == begun >= requests
    copied_by = reads.count(Mode.SOURCE_FIRST)
    assert 0 < copied_by < len(reads)
    source = await tables_of(databases.sides.source)
    destination = await tables_of(databases.sides.destination)
    assert len(source["user_likes"]) == requests
    assert sorted(r["like_cnt"] for r in source["interactives"].values()) == [1] * requests
    # Only the requests that read source_first copied their rows, each whole: a request that
    # saw both modes would have copied a like without its count, or a count without its like.
    for name, rows in destination.items():
        assert all(source[name].get(key) == row for key, row in rows.items()), name
    copied = {r["biz_id"] for r in destination["user_likes"].values()}
    assert copied == {r["biz_id"] for r in destination["interactives"].values()}
    failed = [
        r for r in caplog.records if r.getMessage().startswith("double write: second side failed")
    ]
    # A copy may fail (a deadlock on the destination): it is left to the validator.
    retries = begun - requests
    assert copied_by - retries - len(failed) <= len(copied) <= copied_by


async def test_requests_wait_at_the_barrier_and_run_in_the_mode_switched_to(
    databases: Databases, redis_client: aioredis.Redis
) -> None:
    holder = ModeHolder(unique("interactive-barrier"), Mode.SOURCE_FIRST)
    writer = DoubleWriter(databases.sides, holder, TABLES, switch_wait_s=WAIT_S)
    service = service_over(writer, redis_client)
    assert await service.like(BIZ, 2000, 1)
    holder.set(Mode.SWITCHING)
    held = [asyncio.create_task(service.like(BIZ, 2000, uid)) for uid in range(2, 6)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in held)
    assert holder.in_flight == 0  # waiting at the barrier is not in flight
    holder.set(Mode.DESTINATION_FIRST)
    assert all(await asyncio.wait_for(asyncio.gather(*held), WAIT_S))
    assert holder.in_flight == 0
    # The held likes were counted on the destination first, then copied: no change lost.
    for side in (databases.sides.destination, databases.sides.source):
        (row,) = [r for r in (await rows_of(side, TABLES[0])).values() if r["biz_id"] == 2000]
        assert row["like_cnt"] == 5

    holder.set(Mode.SWITCHING)
    short = DoubleWriter(databases.sides, holder, TABLES, switch_wait_s=0.2)
    with pytest.raises(ModeSwitching) as raised:
        await service_over(short, redis_client).like(BIZ, 2000, 9)
    assert raised.value.kind is ErrorKind.UNAVAILABLE  # the server maps it by kind
    assert holder.in_flight == 0


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[tuple[EventProducer, str]]:
    topic = unique("webook-test-interactive-migration")
    events = EventProducer(producer_config(kafka_bootstrap, topic))
    events.start()
    yield events, topic
    await events.stop()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`WAIT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_failed_destination_writes_are_found_and_repaired_until_none_is_left(
    databases: Databases,
    redis_client: aioredis.Redis,
    kafka_bootstrap: str,
    producer: tuple[EventProducer, str],
) -> None:
    sides = databases.sides
    flaky = FlakySessions(sides.destination, every=3)
    holder = ModeHolder(unique("interactive-repair"), Mode.SOURCE_FIRST)
    service = service_over(DoubleWriter(Sides(sides.source, flaky), holder, TABLES), redis_client)
    for i in range(30):
        await service.like(BIZ, 2000 + i % 7, 300 + i)
        await service.collect(BIZ, 2000 + i % 5, 300 + i, i % 3)
        await service.add_reads(BIZ, {2000 + i % 4: 1})
        if i % 4 == 0:
            await service.cancel_like(BIZ, 2000 + i % 7, 300 + i)
    assert flaky.injected > 0
    assert await tables_of(sides.destination) != await tables_of(sides.source)

    events, topic = producer
    checkpoints = CheckpointStore(sides.destination)
    config = ValidatorConfig(batch_size=10, recheck_delay_s=0.1, rows_per_second=lambda: 1e9)

    def validator(table: MigratedTable, direction: Direction, sink: DifferenceSink) -> Validator:
        return Validator(table, sides, direction, sink, checkpoints, config)

    fixer = HostedFixer(
        Fixer(TABLES, sides),
        consumer_config(kafka_bootstrap, unique("interactive-fixer")),
        topic=topic,
    )
    hosted = HostedMigration(
        holder,
        TABLES,
        validator,
        KafkaDifferenceSink(events, topic=topic),
        checkpoints,
        fixer=fixer,
    )
    fixer.start()
    try:
        assert await fixer.consumer.wait_assigned(WAIT_S)
        rounds: list[int] = []
        for _ in range(5):
            fixed_before = hosted.fixer_counts().fixed
            run = hosted.start_validation(Validation.FULL)
            assert run.task is not None
            await asyncio.wait_for(asyncio.shield(run.task), WAIT_S)
            assert run.error == ""
            assert run.direction is Direction.SOURCE_TO_DESTINATION
            assert run.rows_checked > 0
            rounds.append(run.differences)
            if run.differences == 0:
                break
            await until(
                lambda: hosted.fixer_counts().fixed >= fixed_before + run.differences,  # noqa: B023
                "the fixer to repair the round's differences",
            )
        assert rounds[0] > 0
        assert rounds[-1] == 0, rounds
    finally:
        await hosted.close()
        await fixer.stop()
    assert await tables_of(sides.destination) == await tables_of(sides.source)
