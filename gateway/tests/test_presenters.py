"""The presenters' time format: the remembered text of a second is the text computed anew."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway import presenters

ZONES = ("Asia/Shanghai", "UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe")


def _computed(ms: int, zone: ZoneInfo) -> str:
    """The format as written before the cache: from the float seconds, every time."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _samples() -> list[int]:
    rng = random.Random(16)
    edges = [0, 1, 999, 1000, 1001, -1, -999, -1000, -1001, 1_700_000_000_999]
    # Around New York's and London's 2024 DST changes, and Lord Howe's half-hour one.
    for instant in (1_710_054_000, 1_730_613_600, 1_711_846_800, 1_712_417_400):
        edges += [(instant + d) * 1000 + ms for d in (-1, 0, 1) for ms in (0, 1, 500, 999)]
    return edges + [rng.randrange(-(10**12), 10**13) for _ in range(3000)]


@pytest.mark.parametrize("name", ZONES)
def test_format_time_matches_the_computed_text(name: str) -> None:
    zone = ZoneInfo(name)
    for ms in _samples():
        assert presenters.format_time(ms, zone) == _computed(ms, zone), ms


def test_format_time_cache_is_bounded_and_keyed_by_zone() -> None:
    shanghai, utc = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
    assert presenters.format_time(0, shanghai) == "1970-01-01 08:00:00"
    assert presenters.format_time(0, utc) == "1970-01-01 00:00:00"
    for second in range(presenters.TIME_CACHE_SIZE + 10):
        presenters.format_time(second * 1000, utc)
    info = presenters._second_text.cache_info()
    assert info.maxsize == presenters.TIME_CACHE_SIZE
    assert info.currsize == presenters.TIME_CACHE_SIZE
