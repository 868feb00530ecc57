"""ExpiringMemo: answers trusted for a while, at most so many, the oldest dropped first."""

from __future__ import annotations

import pytest

from kit.cache.memo import ExpiringMemo


def test_an_answer_is_trusted_until_its_time_from_when_it_was_asked() -> None:
    memo: ExpiringMemo[int, str] = ExpiringMemo(ttl_s=5.0, max_entries=10)
    memo.put(1, "a", asked_at=100.0)
    assert memo.get(1, 104.9) == "a"
    assert memo.get(1, 105.0) is None
    assert len(memo) == 0  # forgotten once found expired
    assert memo.get(2, 100.0) is None


def test_beyond_max_entries_the_oldest_answer_goes_first() -> None:
    memo: ExpiringMemo[int, int] = ExpiringMemo(ttl_s=60.0, max_entries=2)
    memo.put(1, 10, asked_at=0.0)
    memo.put(2, 20, asked_at=0.0)
    memo.put(1, 11, asked_at=1.0)  # asked again: now the newest
    memo.put(3, 30, asked_at=2.0)
    assert (memo.get(1, 3.0), memo.get(2, 3.0), memo.get(3, 3.0)) == (11, None, 30)


@pytest.mark.parametrize(("ttl_s", "max_entries"), [(0.0, 10), (5.0, 0)])
def test_no_time_or_no_room_remembers_nothing(ttl_s: float, max_entries: int) -> None:
    memo: ExpiringMemo[int, int] = ExpiringMemo(ttl_s=ttl_s, max_entries=max_entries)
    memo.put(1, 10, asked_at=0.0)
    assert memo.get(1, 0.0) is None
    assert len(memo) == 0


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ExpiringMemo(ttl_s=-1.0, max_entries=1)
