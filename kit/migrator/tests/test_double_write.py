"""Double write in each mode on two real databases (SQLite files, MariaDB databases), with
a second side whose commits fail for a share of the units of work: callers never fail, the
first side has every change, the second side every change whose copy did not fail, under
the first side's primary keys."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from kit.migrator import DoubleWriter, Mode, ModeHolder, Side, Sides
from kit.migrator.tables import Key
from kit.migrator.tests.support import NOTES, FlakySessions, Pair, now_ms, rows_of

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


@pytest.mark.parametrize("mode", list(Mode))
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
