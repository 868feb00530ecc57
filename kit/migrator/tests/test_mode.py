"""The mode logic: sides per mode, switching by hand or from a live value (the two "first"
modes only through ``switching``), the barrier's wait and in-flight count, and the
directions and keys the validator derives (no database)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import REGISTRY

from kit.migrator import (
    Direction,
    MigratedTable,
    Mode,
    ModeHolder,
    ModeRefused,
    ModeSwitching,
    Side,
    parse_mode,
)
from kit.migrator.tests.support import NOTES, notes


@pytest.mark.parametrize(
    ("mode", "first", "second"),
    [
        (Mode.SOURCE_ONLY, Side.SOURCE, None),
        (Mode.SOURCE_FIRST, Side.SOURCE, Side.DESTINATION),
        (Mode.SWITCHING, Side.SOURCE, Side.DESTINATION),
        (Mode.DESTINATION_FIRST, Side.DESTINATION, Side.SOURCE),
        (Mode.DESTINATION_ONLY, Side.DESTINATION, None),
    ],
)
def test_each_mode_writes_and_reads_its_first_side(
    mode: Mode, first: Side, second: Side | None
) -> None:
    assert mode.first is first
    assert mode.second is second
    assert Direction.for_mode(mode).base is first


def test_modes_parse_from_their_names_in_any_case() -> None:
    assert parse_mode("SOURCE_FIRST") is Mode.SOURCE_FIRST
    assert parse_mode(" destination_only ") is Mode.DESTINATION_ONLY
    with pytest.raises(ModeRefused, match="unknown migration mode"):
        parse_mode("both")


def test_set_moves_one_step_at_a_time_unless_forced() -> None:
    holder = ModeHolder("unit-steps")
    assert holder.current() is Mode.SOURCE_ONLY
    assert holder.set(Mode.SOURCE_FIRST) is Mode.SOURCE_ONLY
    with pytest.raises(ModeRefused, match="skips a step"):
        holder.set(Mode.DESTINATION_ONLY)
    assert holder.current() is Mode.SOURCE_FIRST
    holder.set("switching")
    assert REGISTRY.get_sample_value("webook_migrator_mode", {"migration": "unit-steps"}) == 1.5
    holder.set("destination_first")
    holder.set(Mode.SWITCHING)  # back the same way: a rollback
    holder.set(Mode.SOURCE_FIRST)
    holder.set(Mode.DESTINATION_ONLY, force=True)
    assert holder.current() is Mode.DESTINATION_ONLY
    assert REGISTRY.get_sample_value("webook_migrator_mode", {"migration": "unit-steps"}) == 3


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (Mode.SOURCE_FIRST, Mode.DESTINATION_FIRST),
        (Mode.DESTINATION_FIRST, Mode.SOURCE_FIRST),
        (Mode.SOURCE_ONLY, Mode.SWITCHING),
        (Mode.SWITCHING, Mode.SOURCE_ONLY),
        (Mode.DESTINATION_ONLY, Mode.SWITCHING),
        (Mode.SWITCHING, Mode.DESTINATION_ONLY),
    ],
)
def test_the_first_modes_switch_only_through_switching_unless_forced(
    before: Mode, after: Mode
) -> None:
    holder = ModeHolder(f"unit-through-{before}-{after}", before)
    with pytest.raises(ModeRefused, match="skips a step"):
        holder.set(after)
    assert holder.current() is before
    assert holder.set(after, force=True) is before
    assert holder.current() is after


def test_a_followed_setting_may_skip_the_barrier_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = {"mode": "source_first"}
    holder = ModeHolder("unit-follow-skip")
    holder.follow(lambda: live["mode"])
    live["mode"] = "destination_first"
    with caplog.at_level("WARNING", logger="kit.migrator.mode"):
        assert holder.current() is Mode.DESTINATION_FIRST
    assert [r.message for r in caplog.records] == ["migration mode switched"]


async def test_begin_waits_while_switching_and_returns_the_mode_switched_to() -> None:
    holder = ModeHolder("unit-barrier", Mode.SWITCHING)
    waiting = asyncio.create_task(holder.begin(60))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert holder.in_flight == 0
    holder.set(Mode.DESTINATION_FIRST)
    assert await asyncio.wait_for(waiting, 60) is Mode.DESTINATION_FIRST
    assert holder.in_flight == 1
    holder.end()
    assert holder.in_flight == 0


async def test_a_switch_from_another_thread_wakes_the_waiting() -> None:
    holder = ModeHolder("unit-barrier-thread", Mode.SWITCHING)
    waiting = asyncio.create_task(holder.begin(60))
    await asyncio.sleep(0)
    thread = threading.Thread(target=holder.set, args=(Mode.SOURCE_FIRST,))
    thread.start()
    assert await asyncio.wait_for(waiting, 60) is Mode.SOURCE_FIRST
    thread.join()
    holder.end()


async def test_begin_gives_up_after_its_bound() -> None:
    holder = ModeHolder("unit-barrier-bound", Mode.SWITCHING)
    with pytest.raises(ModeSwitching, match=r"switching modes for longer than 0\.1 s"):
        await holder.begin(0.1)
    with pytest.raises(ModeSwitching):
        await holder.begin(0)
    assert holder.in_flight == 0


def test_a_followed_value_is_read_at_each_current_and_a_bad_one_keeps_the_last_mode() -> None:
    live = {"mode": "source_first"}
    holder = ModeHolder("unit-follow")
    holder.follow(lambda: live["mode"])
    assert holder.current() is Mode.SOURCE_FIRST
    live["mode"] = "destination_first"
    assert holder.current() is Mode.DESTINATION_FIRST
    live["mode"] = "sideways"
    assert holder.current() is Mode.DESTINATION_FIRST
    live["mode"] = "destination_only"
    assert holder.current() is Mode.DESTINATION_ONLY
    # set() stops following.
    holder.set(Mode.DESTINATION_FIRST)
    live["mode"] = "source_only"
    assert holder.current() is Mode.DESTINATION_FIRST


def test_a_unit_of_work_sees_the_mode_it_began_with() -> None:
    # The unit of work reads the holder once; later switches are for the next one.
    live = {"mode": "source_first"}
    holder = ModeHolder("unit-snapshot")
    holder.follow(lambda: live["mode"])
    snapshot = holder.current()
    live["mode"] = "destination_first"
    assert snapshot is Mode.SOURCE_FIRST
    assert holder.current() is Mode.DESTINATION_FIRST


def test_directions_name_their_base_and_target() -> None:
    assert Direction.SOURCE_TO_DESTINATION.target is Side.DESTINATION
    assert Direction.DESTINATION_TO_SOURCE.base is Side.DESTINATION
    assert Direction.from_base(Side.SOURCE) is Direction.SOURCE_TO_DESTINATION


def test_keys_round_trip_through_their_json_form() -> None:
    assert NOTES.encode_key((42,)) == "[42]"
    assert NOTES.decode_key("[42]") == (42,)
    assert NOTES.key_from(7) == (7,)
    assert NOTES.key_from({"id": 9, "slug": "x"}) == (9,)
    for bad in ('{"id": 1}', "[1, 2]", "not json"):
        with pytest.raises(ValueError):  # noqa: PT011 (each is a different message)
            NOTES.decode_key(bad)


def test_a_migrated_table_needs_its_update_column() -> None:
    with pytest.raises(ValueError, match="no column"):
        MigratedTable(notes, updated_at="mtime")
    assert MigratedTable(notes).updated_at is None
