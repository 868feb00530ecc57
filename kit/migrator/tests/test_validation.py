"""Full and incremental validation on two real databases: every missing, different and
extra row is found, in both directions, over many small batches; throttling and the
checkpoint."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, update

from kit.migrator import Direction, Sessions, Validator, ValidatorConfig
from kit.migrator.tests.support import (
    NOTES,
    Pair,
    RecordingSink,
    insert_rows,
    key_text,
    note,
    notes,
    now_ms,
)

pytestmark = pytest.mark.integration

FAST = ValidatorConfig(batch_size=7, recheck_delay_s=0, rows_per_second=lambda: 1e9)


async def execute(sessions: Sessions, *statements: object) -> None:
    async with sessions() as session:
        for statement in statements:
            await session.execute(statement)  # type: ignore[call-overload]
        await session.commit()


async def seed_with_differences(pair: Pair) -> set[tuple[str, str]]:
    """50 rows on both sides, then differences on the destination; the expected ones of a
    source-to-destination validation."""
    rows = [note(i, body=f"b{i}") for i in range(1, 51)]
    await insert_rows(pair.sides.source, rows)
    await insert_rows(pair.sides.destination, rows)
    await execute(
        pair.sides.destination,
        delete(notes).where(notes.c.id.in_([1, 20, 50])),
        update(notes).where(notes.c.id.in_([2, 21, 33])).values(body="stale"),
    )
    await execute(pair.sides.source, delete(notes).where(notes.c.id == 10))
    await insert_rows(pair.sides.destination, [note(60), note(61)])
    return {
        *((key_text(i), "missing") for i in (1, 20, 50)),
        *((key_text(i), "different") for i in (2, 21, 33)),
        *((key_text(i), "extra") for i in (10, 60, 61)),
    }


def validator(pair: Pair, sink: RecordingSink, direction: Direction, **config: object) -> Validator:
    settings = {**FAST.__dict__, **config}
    return Validator(
        NOTES, pair.sides, direction, sink, pair.checkpoints, ValidatorConfig(**settings)
    )


async def test_a_full_pass_finds_every_difference_in_both_directions(pair: Pair) -> None:
    expected = await seed_with_differences(pair)
    sink = RecordingSink()
    report = await validator(pair, sink, Direction.SOURCE_TO_DESTINATION).run_full()
    assert sink.found() == expected
    assert report.finished
    assert report.batches > 7  # many batches, the last ones with extras only
    assert report.rows_checked == 52
    assert all(d.base.value == "source" for d in sink.published)

    mirrored = {
        (key, {"missing": "extra", "extra": "missing"}.get(kind, kind)) for key, kind in expected
    }
    reverse = RecordingSink()
    await validator(pair, reverse, Direction.DESTINATION_TO_SOURCE).run_full()
    assert reverse.found() == mirrored

    # The finished pass cleared its checkpoint: the next starts from the first key again.
    again = RecordingSink()
    await validator(pair, again, Direction.SOURCE_TO_DESTINATION).run_full()
    assert again.found() == expected


async def test_a_pass_over_equal_sides_finds_nothing(pair: Pair) -> None:
    rows = [note(i) for i in range(1, 30)]
    await insert_rows(pair.sides.source, rows)
    await insert_rows(pair.sides.destination, rows)
    sink = RecordingSink()
    report = await validator(pair, sink, Direction.SOURCE_TO_DESTINATION).run_full()
    assert (report.rows_checked, sink.published) == (29, [])
    incremental = await validator(pair, sink, Direction.SOURCE_TO_DESTINATION).run_incremental()
    assert (incremental.rows_checked, sink.published) == (29, [])


async def test_an_incremental_pass_checks_rows_updated_since_its_checkpoint(pair: Pair) -> None:
    old = now_ms() - 3_600_000
    rows = [note(i, utime=old + i * 10_000) for i in range(1, 31)]
    await insert_rows(pair.sides.source, rows)
    await insert_rows(pair.sides.destination, rows)
    sink = RecordingSink()
    check = validator(pair, sink, Direction.SOURCE_TO_DESTINATION, overlap_ms=1_000)
    first = await check.run_incremental()
    assert (first.rows_checked, sink.published) == (30, [])

    # An old difference (before the checkpoint and its overlap) is for full passes only.
    await execute(pair.sides.destination, update(notes).where(notes.c.id == 3).values(body="x"))
    recent = now_ms()
    await execute(
        pair.sides.source,
        update(notes).where(notes.c.id == 5).values(body="changed", utime=recent),
    )
    await insert_rows(pair.sides.source, [note(40, utime=recent)])
    await insert_rows(pair.sides.destination, [note(41, utime=recent)])
    # Committed late: an update time just inside the overlap before the checkpoint.
    await insert_rows(pair.sides.source, [note(42, utime=old + 300_000 - 500)])

    second = await check.run_incremental()
    assert sink.found() == {
        (key_text(5), "different"),
        (key_text(40), "missing"),
        (key_text(41), "extra"),
        (key_text(42), "missing"),
    }
    assert second.rows_checked < 30  # only the recent rows and the overlap
    full = RecordingSink()
    await validator(pair, full, Direction.SOURCE_TO_DESTINATION).run_full()
    assert (key_text(3), "different") in full.found()


async def test_the_budget_paces_and_pauses_the_validator(pair: Pair) -> None:
    await insert_rows(pair.sides.source, [note(i) for i in range(1, 21)])
    budget = {"rows": 0.0}
    sink = RecordingSink()
    check = validator(
        pair,
        sink,
        Direction.SOURCE_TO_DESTINATION,
        rows_per_second=lambda: budget["rows"],
        pause_poll_s=0.05,
    )
    task = asyncio.create_task(check.run_full())
    await asyncio.sleep(0.3)
    assert not task.done()  # paused: a budget of 0
    assert sink.published == []
    budget["rows"] = 1e9
    report = await asyncio.wait_for(task, 60)
    assert report.finished
    assert len(sink.published) == 20
