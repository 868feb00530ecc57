"""Double write in each mode on two real databases (SQLite files, MariaDB databases), with
a second side whose commits fail for a share of the units of work: callers never fail, the
first side has every change, the second side every change whose copy did not fail, under
the first side's primary keys. And the ``switching`` barrier: a unit of work that begins in
it waits for the switch and runs in the new mode, counted in flight from then until it
ends; past its bound it fails UNAVAILABLE."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from kit.errors import ErrorKind
from kit.migrator import DoubleWriter, Mode, ModeHolder, ModeSwitching, Side, Sides
from kit.migrator.errors import Reason
from kit.migrator.tables import Key
from kit.migrator.tests.support import NOTES, FlakySessions, Pair, now_ms, rows_of
from kit.registry.tests.helpers import eventually

pytestmark = pytest.mark.integration


def failures(side: Side) -> float:
    return (
        REGISTRY.get_sample_value(
            "webook_migrator_second_write_failures_total",
            {"table": NOTES.name, "side": side.value},
        )
        or 0.0
    )


def flaky_sides(pair: Pair, mode: Mode, every: int) -> tuple[Sides, FlakySessions]:
    """The pair with the side ``mode`` does not write first made flaky."""
    flaky_side = mode.first.other
    flaky = FlakySessions(pair.sides.of(flaky_side), every)
    if flaky_side is Side.SOURCE:
        return Sides(flaky, pair.sides.destination), flaky
    return Sides(pair.sides.source, flaky), flaky


# Bounds a hang on a loaded two-core machine only: the tests wait on conditions.
WAIT_S = 60.0
WRITING_MODES = [mode for mode in Mode if mode is not Mode.SWITCHING]


def in_flight(migration: str) -> float | None:
    return REGISTRY.get_sample_value("webook_migrator_units_in_flight", {"migration": migration})


@pytest.mark.parametrize("mode", WRITING_MODES)
async def test_a_failing_second_side_never_fails_the_caller(pair: Pair, mode: Mode) -> None:
    holder = ModeHolder(f"dw-{mode}", mode)
    sides, flaky = flaky_sides(pair, mode, every=3)
    writer = DoubleWriter(sides, holder, [NOTES])
    last_copy_failed: dict[Key, bool] = {}

    async def unit(action: str, key: Key | None = None) -> Key:
        injected = flaky.injected
        async with writer.unit_of_work() as uow:
            rows = uow.rows(NOTES)
            if action == "insert":
                key = await rows.insert(
                    {"slug": f"n-{now_ms()}-{len(last_copy_failed)}", "utime": now_ms()}
                )
            elif action == "update":
                assert key is not None
                assert await rows.update(key, {"cnt": NOTES.table.c.cnt + 1, "utime": now_ms()})
            else:
                assert key is not None
                assert await rows.delete(key) == 1
            await uow.commit()
        assert key is not None
        last_copy_failed[key] = flaky.injected > injected
        return key

    before = failures(mode.second) if mode.second else 0.0
    keys = [await unit("insert") for _ in range(15)]
    for key in keys[:9]:
        await unit("update", key)
    for key in keys[9:12]:
        await unit("delete", key)

    first = await rows_of(pair.sides.of(mode.first))
    second_side = mode.second or mode.first.other
    second = await rows_of(pair.sides.of(second_side))
    # The first side has every change: 12 rows, the updated ones counted once.
    assert sorted(first) == sorted(keys[:9] + keys[12:])
    assert all(first[key]["cnt"] == 1 for key in keys[:9])
    if mode.second is None:
        assert second == {}
        assert flaky.injected == 0
        return
    assert flaky.injected > 0
    assert failures(mode.second) - before == flaky.injected
    # Each row whose last copy went through is the same on both sides, same primary key.
    for key, failed in last_copy_failed.items():
        if not failed:
            assert second.get(key) == first.get(key), key
    differing = {k for k in set(first) | set(second) if first.get(k) != second.get(k)}
    assert differing
    assert differing <= {key for key, failed in last_copy_failed.items() if failed}


async def test_the_mode_is_read_once_per_unit_of_work(pair: Pair) -> None:
    live = {"mode": "source_first"}
    holder = ModeHolder("dw-snapshot")
    holder.follow(lambda: live["mode"])
    writer = DoubleWriter(pair.sides, holder, [NOTES])
    async with writer.unit_of_work() as uow:
        key = await uow.rows(NOTES).insert({"slug": "snap", "utime": now_ms()})
        live["mode"] = "destination_first"  # switched while the request runs
        assert uow.mode is Mode.SOURCE_FIRST
        await uow.commit()
    # Written to the source first (its id), then copied to the destination.
    assert key in await rows_of(pair.sides.source)
    assert (await rows_of(pair.sides.destination))[key]["slug"] == "snap"
    async with writer.unit_of_work() as uow:
        assert uow.mode is Mode.DESTINATION_FIRST
        assert await uow.rows(NOTES).get(key) is not None  # read from the destination
        await uow.rows(NOTES).update(key, {"body": "from destination"})
        await uow.commit()
    assert (await rows_of(pair.sides.source))[key]["body"] == "from destination"


async def test_statements_of_the_caller_are_copied_once_touched(pair: Pair) -> None:
    writer = DoubleWriter(pair.sides, ModeHolder("dw-touch", Mode.SOURCE_FIRST), [NOTES])
    async with writer.unit_of_work() as uow:
        key = await uow.rows(NOTES).insert({"slug": "raw", "utime": 1})
        await uow.session.execute(
            NOTES.table.update().where(NOTES.table.c.id == key[0]).values(body="raw sql")
        )
        uow.touch(NOTES, key)
        await uow.commit()
    assert (await rows_of(pair.sides.destination))[key]["body"] == "raw sql"
    # Leaving without a commit copies nothing and keeps nothing.
    async with writer.unit_of_work() as uow:
        await uow.rows(NOTES).delete(key)
    assert key in await rows_of(pair.sides.destination)
    assert key in await rows_of(pair.sides.source)


async def test_a_unit_of_work_begun_while_switching_waits_and_runs_in_the_new_mode(
    pair: Pair,
) -> None:
    holder = ModeHolder("dw-barrier", Mode.SOURCE_FIRST)
    writer = DoubleWriter(pair.sides, holder, [NOTES], switch_wait_s=WAIT_S)
    # A unit of work of source_first in flight when the switch begins.
    old = writer.unit_of_work()
    await old.__aenter__()
    key = await old.rows(NOTES).insert({"slug": "barrier", "utime": now_ms()})
    holder.set(Mode.SWITCHING)
    assert (holder.in_flight, in_flight("dw-barrier")) == (1, 1)

    async def new_unit() -> Mode:
        async with writer.unit_of_work() as uow:
            await uow.rows(NOTES).update(key, {"cnt": NOTES.table.c.cnt + 1, "utime": now_ms()})
            await uow.commit()
            return uow.mode

    waiting = asyncio.create_task(new_unit())
    await asyncio.sleep(0)  # let it reach the barrier
    # The old one finishes in its mode; the waiting one has not begun (not in flight).
    assert old.mode is Mode.SOURCE_FIRST
    await old.commit()
    await old.__aexit__(None, None, None)
    assert holder.in_flight == 0
    assert not waiting.done()

    holder.set(Mode.DESTINATION_FIRST)
    assert await asyncio.wait_for(waiting, WAIT_S) is Mode.DESTINATION_FIRST
    assert holder.in_flight == 0
    assert in_flight("dw-barrier") == 0
    # Its change was made on the destination first, then copied to the source.
    assert (await rows_of(pair.sides.destination))[key]["cnt"] == 1
    assert (await rows_of(pair.sides.source))[key]["cnt"] == 1


async def test_a_followed_setting_wakes_the_waiting_units_when_refreshed(pair: Pair) -> None:
    live = {"mode": "switching"}
    holder = ModeHolder("dw-barrier-follow", Mode.SOURCE_FIRST)
    holder.follow(lambda: live["mode"])
    writer = DoubleWriter(pair.sides, holder, [NOTES], switch_wait_s=lambda: WAIT_S)

    async def unit(slug: str) -> Mode:
        async with writer.unit_of_work() as uow:
            await uow.rows(NOTES).insert({"slug": slug, "utime": now_ms()})
            await uow.commit()
            return uow.mode

    failed_before = failures(Side.DESTINATION)
    waiting = [asyncio.create_task(unit(f"follow-{n}")) for n in range(3)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    live["mode"] = "source_first"  # back, as a failed switch does
    holder.refresh()
    modes = await asyncio.wait_for(asyncio.gather(*waiting), WAIT_S)
    assert modes == [Mode.SOURCE_FIRST] * 3
    assert len(await rows_of(pair.sides.source)) == 3
    # Each copied to the destination, or counted as left to the validator: three units
    # released at once upsert into one empty table, where InnoDB may pick one of them as a
    # deadlock victim (the second side's write is not retried).
    copied = len(await rows_of(pair.sides.destination))
    assert copied + (failures(Side.DESTINATION) - failed_before) == 3


async def test_the_wait_at_the_barrier_is_bounded_by_an_unavailable_error(pair: Pair) -> None:
    holder = ModeHolder("dw-barrier-timeout", Mode.SWITCHING)
    writer = DoubleWriter(pair.sides, holder, [NOTES], switch_wait_s=0.2)
    with pytest.raises(ModeSwitching) as raised:
        async with writer.unit_of_work():
            pytest.fail("a unit of work ran in switching")
    error = raised.value
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.reason == Reason.MODE_SWITCHING.value
    assert error.metadata == {"migration": "dw-barrier-timeout"}
    assert holder.in_flight == 0
    assert await rows_of(pair.sides.source) == {}


async def test_units_in_flight_are_counted_until_they_end_whatever_the_outcome(
    pair: Pair,
) -> None:
    holder = ModeHolder("dw-in-flight", Mode.SOURCE_FIRST)
    writer = DoubleWriter(pair.sides, holder, [NOTES])
    units = [writer.unit_of_work() for _ in range(3)]
    for n, uow in enumerate(units, start=1):
        await uow.__aenter__()
        assert holder.in_flight == n
    await eventually(lambda: in_flight("dw-in-flight") == 3, WAIT_S, "the gauge at 3")
    await units[0].rows(NOTES).insert({"slug": "kept", "utime": now_ms()})
    await units[0].commit()
    await units[0].__aexit__(None, None, None)
    await units[1].__aexit__(None, None, None)  # rolled back
    failure = RuntimeError("the caller failed")
    await units[2].__aexit__(RuntimeError, failure, None)
    assert holder.in_flight == 0
    assert in_flight("dw-in-flight") == 0
