"""The fixer on two real databases, and validation + repair through the session's real
broker: bad events skipped, a validator killed mid-pass resumes from its checkpoint and
still publishes every difference, and repeated validation and repair converge to zero
differences while writes go on."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Sequence

import pytest

from kit.events import BatchConsumer, ConsumedEvent, EventProducer, TopicHandler, protobuf_decoder
from kit.events.tests.support import consumer_config, eventually, metric, producer_config, unique
from kit.migrator import (
    Difference,
    Direction,
    DoubleWriter,
    Fixer,
    KafkaDifferenceSink,
    Mode,
    ModeHolder,
    Sides,
    Validator,
    ValidatorConfig,
)
from kit.migrator.tests.support import (
    NOTES,
    FlakySessions,
    Pair,
    insert_rows,
    note,
    now_ms,
    rows_of,
)
from kit.migrator.tests.test_validation import seed_with_differences
from webook.migrator.v1 import migrator_pb2

pytestmark = pytest.mark.integration

DEADLINE_S = 90.0


def event(
    table: str,
    key: str,
    base: migrator_pb2.Side.ValueType = migrator_pb2.SIDE_SOURCE,
    offset: int = 0,
) -> ConsumedEvent[migrator_pb2.Difference]:
    payload = migrator_pb2.Difference(
        table=table, key=key, base=base, kind=migrator_pb2.DIFFERENCE_KIND_DIFFERENT
    )
    return ConsumedEvent("t", 0, 0, None, 0, payload)


def fixes(outcome: str) -> float:
    return metric("webook_migrator_fixes_total", table=NOTES.name, outcome=outcome)


async def test_the_fixer_copies_the_base_row_as_it_is_and_skips_bad_events(pair: Pair) -> None:
    await insert_rows(pair.sides.source, [note(1, body="now"), note(2), note(4, body="moved")])
    # On the target: 1 stale, 2 missing, 3 extra, and row 5 holding row 4's unique slug.
    await insert_rows(
        pair.sides.destination,
        [note(1, body="old"), note(3), {**note(5), "slug": "note-4"}],
    )
    fixer = Fixer([NOTES], pair.sides)
    skipped = fixes("skipped")
    unknown = metric("webook_migrator_fixes_total", table="unknown", outcome="skipped")
    await fixer.handle(
        [
            event(NOTES.name, "[1]"),
            event(NOTES.name, "[2]"),
            event("no_such_table", "[1]"),
            event(NOTES.name, "not json"),
            event(NOTES.name, "[1, 2]"),
            event(NOTES.name, "[3]", base=migrator_pb2.SIDE_UNSPECIFIED),
            event(NOTES.name, "[3]"),
            event(NOTES.name, "[4]"),
            event(NOTES.name, "[1]"),  # a duplicate: repaired once
        ]
    )
    assert fixes("skipped") - skipped == 3
    assert metric("webook_migrator_fixes_total", table="unknown", outcome="skipped") == unknown + 1
    assert await rows_of(pair.sides.destination) == await rows_of(pair.sides.source)
    # Idempotent: the same events again change nothing.
    await fixer.handle([event(NOTES.name, "[1]"), event(NOTES.name, "[3]")])
    assert await rows_of(pair.sides.destination) == await rows_of(pair.sides.source)


class GatedSink:
    """Publishes the first ``batches`` batches, then hangs (a validator stuck mid-pass)."""

    def __init__(self, inner: KafkaDifferenceSink, batches: int) -> None:
        self._inner = inner
        self._left = batches
        self.stuck = asyncio.Event()

    async def publish(self, differences: Sequence[Difference]) -> None:
        if self._left == 0:
            self.stuck.set()
            await asyncio.Event().wait()
        self._left -= 1
        await self._inner.publish(differences)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[tuple[EventProducer, str]]:
    topic = unique("webook-test-migrator")
    events = EventProducer(producer_config(kafka_bootstrap, topic))
    events.start()
    yield events, topic
    await events.stop()


async def test_a_validator_killed_mid_pass_resumes_and_still_finds_every_difference(
    pair: Pair, kafka_bootstrap: str, producer: tuple[EventProducer, str]
) -> None:
    events, topic = producer
    expected = await seed_with_differences(pair)
    config = ValidatorConfig(batch_size=5, recheck_delay_s=0, rows_per_second=lambda: 1e9)
    sink = KafkaDifferenceSink(events, topic=topic)
    gated = GatedSink(sink, batches=2)
    direction = Direction.SOURCE_TO_DESTINATION
    first = Validator(NOTES, pair.sides, direction, gated, pair.checkpoints, config)
    task = asyncio.create_task(first.run_full())
    await asyncio.wait_for(gated.stuck.wait(), DEADLINE_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = await pair.checkpoints.load(NOTES.name, direction.value, "full")
    assert saved.last_key is not None  # it had moved, and stopped before the stuck batch

    second = Validator(NOTES, pair.sides, direction, sink, pair.checkpoints, config)
    report = await second.run_full()
    assert report.finished
    assert report.rows_checked < 52  # resumed, not started again

    received: list[migrator_pb2.Difference] = []

    async def collect(batch: Sequence[ConsumedEvent[migrator_pb2.Difference]]) -> None:
        received.extend(e.payload for e in batch)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, unique("migrator-check")),
        {topic: TopicHandler(protobuf_decoder(migrator_pb2.Difference), collect)},
    )
    consumer.start()
    try:
        kinds = {1: "missing", 2: "different", 3: "extra"}
        assert await eventually(
            lambda: {(d.key, kinds[d.kind]) for d in received} >= expected, DEADLINE_S
        ), received
    finally:
        await consumer.stop()
    assert {(d.key, kinds[d.kind]) for d in received} == expected
    assert all(d.table == NOTES.name and d.base == migrator_pb2.SIDE_SOURCE for d in received)


async def test_validation_and_repair_converge_while_writes_go_on(
    pair: Pair, kafka_bootstrap: str, producer: tuple[EventProducer, str]
) -> None:
    events, topic = producer
    flaky = FlakySessions(pair.sides.destination, every=4)
    writer = DoubleWriter(
        Sides(pair.sides.source, flaky), ModeHolder("converge", Mode.SOURCE_FIRST), [NOTES]
    )
    keys: list[tuple[object, ...]] = []
    rng = random.Random(7)
    slugs = itertools.count()

    async def write_once() -> None:
        async with writer.unit_of_work() as uow:
            rows = uow.rows(NOTES)
            action = rng.random()
            if not keys or action < 0.3:
                keys.append(await rows.insert({"slug": f"c-{next(slugs)}", "utime": now_ms()}))
            elif action < 0.9:
                await rows.update(
                    rng.choice(keys), {"cnt": NOTES.table.c.cnt + 1, "utime": now_ms()}
                )
            else:
                key = keys.pop(rng.randrange(len(keys)))
                await rows.delete(key)
            await uow.commit()

    for _ in range(40):
        await write_once()
    stop = asyncio.Event()

    async def keep_writing() -> int:
        count = 0
        while not stop.is_set():
            await write_once()
            count += 1
            await asyncio.sleep(0.005)
        return count

    fixer = Fixer([NOTES], pair.sides)
    consumer = fixer.consumer(
        consumer_config(kafka_bootstrap, unique("migrator-fixer")), topic=topic
    )
    consumer.start()
    config = ValidatorConfig(batch_size=20, recheck_delay_s=0.2, rows_per_second=lambda: 1e9)
    validator = Validator(
        NOTES,
        pair.sides,
        Direction.SOURCE_TO_DESTINATION,
        KafkaDifferenceSink(events, topic=topic),
        pair.checkpoints,
        config,
    )

    async def validate_and_wait_for_repairs() -> int:
        handled = sum(fixes(o) for o in ("upserted", "deleted", "failed", "skipped"))
        report = await validator.run_full()
        found = report.total_differences
        assert await eventually(
            lambda: (
                sum(fixes(o) for o in ("upserted", "deleted", "failed", "skipped"))
                >= handled + found
            ),
            DEADLINE_S,
        )
        return found

    try:
        assert await consumer.wait_assigned(DEADLINE_S)
        writing = asyncio.create_task(keep_writing())
        found_while_writing = [await validate_and_wait_for_repairs() for _ in range(3)]
        stop.set()
        written = await writing
        assert written > 0
        assert flaky.injected > 0
        assert found_while_writing[0] > 0
        rounds = []
        for _ in range(5):
            rounds.append(await validate_and_wait_for_repairs())
            if rounds[-1] == 0:
                break
        assert rounds[-1] == 0, rounds
    finally:
        stop.set()
        await consumer.stop()
    assert await rows_of(pair.sides.destination) == await rows_of(pair.sides.source)
    assert len(await rows_of(pair.sides.source)) == len(keys)
