"""The split of a reward, the checks of a credit and the reconciliation's day window."""

from __future__ import annotations

import pytest

from services.account.domain import (
    MAX_REWARD_FEN,
    MS_PER_DAY,
    RewardCredit,
    Shares,
    check_reward,
    day_window,
    reward_biz_key,
    split_reward,
)
from services.account.errors import AccountInvalidArgument, Reason


@pytest.mark.parametrize(
    ("amount", "percent", "shares"),
    [
        (1, 10, Shares(author=1, platform=0)),  # one cent: the platform's tenth rounds down
        (9, 10, Shares(author=9, platform=0)),
        (10, 10, Shares(author=9, platform=1)),
        (19, 10, Shares(author=18, platform=1)),
        (100, 10, Shares(author=90, platform=10)),
        (100_000, 10, Shares(author=90_000, platform=10_000)),
        (99, 33, Shares(author=67, platform=32)),
        (50, 0, Shares(author=50, platform=0)),
        (50, 100, Shares(author=0, platform=50)),
    ],
)
def test_the_platform_share_is_rounded_down_and_the_shares_add_up(
    amount: int, percent: int, shares: Shares
) -> None:
    split = split_reward(amount, percent)
    assert split == shares
    assert split.author + split.platform == amount


@pytest.mark.parametrize(("amount", "percent"), [(-1, 10), (10, -1), (10, 101)])
def test_impossible_splits_are_refused(amount: int, percent: int) -> None:
    with pytest.raises(ValueError, match="cannot split"):
        split_reward(amount, percent)


def credit(**changes: int) -> RewardCredit:
    values = {"rid": 5, "rewarder": 7, "author": 42, "amount_fen": 100, "at_ms": 1, "biz_id": 3}
    values.update(changes)
    return RewardCredit(biz="article", **values)


def test_a_credit_needs_a_reward_an_author_and_a_sane_amount() -> None:
    assert check_reward(credit()) is None
    assert credit().biz_key == reward_biz_key(5) == "reward:5"
    assert check_reward(credit(rid=0)) == "missing_rid"
    assert check_reward(credit(author=0)) == "missing_author"
    assert check_reward(credit(author=-3)) == "missing_author"
    assert check_reward(credit(amount_fen=0)) == "non_positive_amount"
    assert check_reward(credit(amount_fen=-100)) == "non_positive_amount"
    assert check_reward(credit(amount_fen=MAX_REWARD_FEN)) is None
    assert check_reward(credit(amount_fen=MAX_REWARD_FEN + 1)) == "amount_too_large"


def test_the_day_window_and_what_zero_stands_for() -> None:
    now = 1_796_637_600_000  # 2026-12-07 10:00 UTC
    today = now - 10 * 3_600_000
    assert day_window(0, now_ms=now) == (today - MS_PER_DAY, today)
    assert day_window(today, now_ms=now) == (today, today + MS_PER_DAY)
    # Not aligned to UTC: a day of another time zone (UTC+8 here).
    assert day_window(today - 8 * 3_600_000, now_ms=now)[1] == today + 16 * 3_600_000
    with pytest.raises(AccountInvalidArgument) as refused:
        day_window(-1, now_ms=now)
    assert refused.value.reason == Reason.INVALID_DAY
