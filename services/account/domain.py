"""Accounts, their ledger and the rules of a reward's credit, as plain data.

A paid reward (:class:`RewardCredit`, from a ``webook.reward.paid`` event) is split by
:func:`split_reward`: the platform keeps ``amount * percent // 100`` (rounded down), the
author gets the rest, so the two shares always add up to the amount. Both are credited
under the business key :func:`reward_biz_key` (``reward:<rid>``), the key the ledger is
unique on per account: a second delivery of the same reward credits nothing.

Money is ``int`` fen (1/100 yuan) everywhere, never a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from services.account.errors import AccountInvalidArgument, Reason

PLATFORM_UID: Final = 0
"""The platform's (system) account: user ids are positive, so 0 is never a user's."""
MS_PER_DAY: Final = 86_400_000
MAX_REWARD_FEN: Final = 10**12
"""A reward above this (10 billion yuan) is a bad event, never a credit: it bounds every
balance far below BIGINT's range whatever the events say."""


class AccountType(IntEnum):
    """Whose account it is (``accounts.type``)."""

    USER = 1
    SYSTEM = 2


class ActivityType(IntEnum):
    """Why a balance moved (``account_activities.type``; the same numbers as the proto's
    ``ActivityType``)."""

    REWARD = 1
    REWARD_PLATFORM_SHARE = 2


@dataclass(frozen=True, slots=True)
class RewardCredit:
    """A paid reward to credit: ``amount_fen`` paid by ``rewarder`` for ``author``'s
    ``biz``/``biz_id`` at ``at_ms``."""

    rid: int
    biz: str
    biz_id: int
    rewarder: int
    author: int
    amount_fen: int
    at_ms: int

    @property
    def biz_key(self) -> str:
        """The key its credits are idempotent on."""
        return reward_biz_key(self.rid)


@dataclass(frozen=True, slots=True)
class Shares:
    """A reward split between its author and the platform (``author + platform == amount``)."""

    author: int
    platform: int


@dataclass(frozen=True, slots=True)
class Activity:
    """One ledger row of an account."""

    biz_key: str
    amount_fen: int
    type: ActivityType
    at_ms: int


@dataclass(frozen=True, slots=True)
class AccountView:
    """A user's balance and newest ledger rows."""

    uid: int
    balance_fen: int
    recent: tuple[Activity, ...]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One day's reconciliation: credits against the payments that succeeded."""

    day_start_ms: int
    credited_fen: int
    paid_fen: int

    @property
    def difference_fen(self) -> int:
        """``paid - credited``: positive when money was paid that no account holds yet."""
        return self.paid_fen - self.credited_fen


def reward_biz_key(rid: int) -> str:
    """The business key of reward ``rid``'s credits."""
    return f"reward:{rid}"


def split_reward(amount_fen: int, platform_percent: int) -> Shares:
    """The author's and the platform's shares of ``amount_fen`` (the platform's rounded down)."""
    if amount_fen < 0 or not 0 <= platform_percent <= 100:
        raise ValueError(f"cannot split {amount_fen} fen at {platform_percent}%")
    platform = amount_fen * platform_percent // 100
    return Shares(author=amount_fen - platform, platform=platform)


def check_reward(credit: RewardCredit) -> str | None:
    """Why ``credit`` cannot be credited (a short reason), ``None`` when it can."""
    if credit.rid <= 0:
        return "missing_rid"
    if credit.author <= 0:
        return "missing_author"
    if credit.amount_fen <= 0:
        return "non_positive_amount"
    if credit.amount_fen > MAX_REWARD_FEN:
        return "amount_too_large"
    return None


def check_uid(uid: int) -> int:
    """A user id; zero (the platform) and negative ids are refused."""
    if uid <= 0:
        raise AccountInvalidArgument(
            Reason.INVALID_USER, "uid must be a user id", metadata={"field": "uid"}
        )
    return uid


def day_window(day_start_ms: int, *, now_ms: int) -> tuple[int, int]:
    """``[start, end)`` of the day starting at ``day_start_ms``; 0 means the last full UTC
    day before ``now_ms``."""
    if day_start_ms < 0:
        raise AccountInvalidArgument(
            Reason.INVALID_DAY,
            "day_start_ms must not be negative",
            metadata={"field": "day_start_ms"},
        )
    if day_start_ms == 0:
        day_start_ms = (now_ms // MS_PER_DAY - 1) * MS_PER_DAY
    return day_start_ms, day_start_ms + MS_PER_DAY
