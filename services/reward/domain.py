"""Rewards as plain data, their status rules, and the rules PreReward's input must follow.

A reward moves forward only: ``INIT`` → ``PAYED`` or ``INIT`` → ``FAILED``; both are final,
as the payment they follow is (a payment that failed never succeeds later, and one that
succeeded is refunded, not failed). The payment of reward ``rid`` is keyed
``reward-<rid>`` (:func:`biz_trade_no`), which is how a payment event finds its reward
(:func:`reward_id_of`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from services.reward.errors import Reason, RewardInvalidArgument

ARTICLE_BIZ: Final = "article"
BIZS: Final = frozenset({ARTICLE_BIZ})
TRADE_NO_PREFIX: Final = "reward-"
_TRADE_NO = re.compile(r"reward-([1-9][0-9]{0,18})")


class RewardStatus(IntEnum):
    """Where a reward is (the values of ``webook.reward.v1.RewardStatus``)."""

    INIT = 1
    PAYED = 2
    FAILED = 3


class PaymentStatus(IntEnum):
    """What the payment service says of a payment (``webook.payment.v1.PaymentStatus``)."""

    UNKNOWN = 0
    INIT = 1
    SUCCESS = 2
    FAILED = 3
    REFUND = 4


def reward_status_after(payment: PaymentStatus) -> RewardStatus | None:
    """The status a payment in ``payment`` moves an ``INIT`` reward to; ``None``: stays.

    A refund is not the reward's business (the account service owns money paid out): a
    reward seen only refunded stays ``INIT``, one already ``PAYED`` stays so.
    """
    if payment is PaymentStatus.SUCCESS:
        return RewardStatus.PAYED
    if payment is PaymentStatus.FAILED:
        return RewardStatus.FAILED
    return None


@dataclass(frozen=True, slots=True)
class Reward:
    """Reward ``id``: ``uid`` pays ``amount_fen`` to ``target_uid``, author of
    ``(biz, biz_id)``; ``code_url`` is empty until the payment was opened."""

    id: int
    biz: str
    biz_id: int
    uid: int
    target_uid: int
    amount_fen: int
    status: RewardStatus
    code_url: str
    ctime_ms: int
    utime_ms: int


@dataclass(frozen=True, slots=True)
class NewReward:
    """What PreReward records."""

    biz: str
    biz_id: int
    uid: int
    target_uid: int
    amount_fen: int


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    """A payment's status as its service reported it (an event, or a lookup)."""

    biz_trade_no: str
    amount_fen: int
    status: PaymentStatus
    at_ms: int


@dataclass(frozen=True, slots=True)
class AmountBounds:
    """The amounts (fen) a reward may have, both ends included."""

    min_fen: int
    max_fen: int


def biz_trade_no(rid: int) -> str:
    """The payment's business key of reward ``rid``."""
    return f"{TRADE_NO_PREFIX}{rid}"


def reward_id_of(trade_no: str) -> int | None:
    """The reward id a payment key names; ``None`` for another business's payment."""
    matched = _TRADE_NO.fullmatch(trade_no)
    return int(matched.group(1)) if matched else None


def check_uid(uid: int) -> int:
    """A user id; zero and negative ids are refused."""
    if uid <= 0:
        raise RewardInvalidArgument(
            Reason.INVALID_USER, "uid must be a user id", metadata={"field": "uid"}
        )
    return uid


def check_request(biz: str, biz_id: int, uid: int, amount_fen: int, bounds: AmountBounds) -> None:
    """Refuse an unknown biz, malformed ids and amounts outside ``bounds``."""
    if biz not in BIZS:
        raise RewardInvalidArgument(
            Reason.INVALID_BIZ, f"biz must be one of {sorted(BIZS)}", metadata={"field": "biz"}
        )
    if biz_id <= 0:
        raise RewardInvalidArgument(
            Reason.INVALID_BIZ, "biz_id must be an id", metadata={"field": "biz_id"}
        )
    check_uid(uid)
    if not bounds.min_fen <= amount_fen <= bounds.max_fen:
        raise RewardInvalidArgument(
            Reason.INVALID_AMOUNT,
            f"amount_fen must be {bounds.min_fen}..{bounds.max_fen}",
            metadata={
                "field": "amount_fen",
                "min_fen": str(bounds.min_fen),
                "max_fen": str(bounds.max_fen),
            },
        )
