"""Payment orders as plain data, the rules their input follows, and how a status may move.

Money is an ``int`` of fen (1/100 yuan) everywhere: in the API, in SQL (``BIGINT``), in
WeChat Pay's ``amount.total``. A status moves forward only (:func:`can_move`):
``INIT -> SUCCESS | FAILED | REFUND`` and ``SUCCESS -> REFUND``; anything else (a late
``NOTPAY`` after a success, a replayed notification) changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from services.payment.errors import PaymentInvalidArgument, Reason

MAX_AMOUNT_FEN: Final = 100_000_000  # one million yuan: far above any reward
MAX_DESCRIPTION: Final = 127
# WeChat Pay's out_trade_no: 6-32 characters of letters, digits, _ - | *.
_TRADE_NO: Final = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")


class PaymentStatus(IntEnum):
    """Where an order is: the values of ``webook.payment.v1.PaymentStatus`` (the tests check
    they stay the same), stored as they are in ``payments.status``."""

    INIT = 1
    SUCCESS = 2
    FAILED = 3
    REFUND = 4


_PREDECESSORS: Final[dict[PaymentStatus, frozenset[PaymentStatus]]] = {
    PaymentStatus.INIT: frozenset(),
    PaymentStatus.SUCCESS: frozenset({PaymentStatus.INIT}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.INIT}),
    PaymentStatus.REFUND: frozenset({PaymentStatus.INIT, PaymentStatus.SUCCESS}),
}


def predecessors(status: PaymentStatus) -> frozenset[PaymentStatus]:
    """The statuses an order may move to ``status`` from."""
    return _PREDECESSORS[status]


def can_move(current: PaymentStatus, new: PaymentStatus) -> bool:
    """Whether an order in ``current`` may move to ``new`` (forward only)."""
    return current in _PREDECESSORS[new]


@dataclass(frozen=True, slots=True)
class Payment:
    """One order. ``code_url`` is empty until WeChat Pay answered the prepay; ``txn_id``
    until it reported a transaction; ``paid_ms`` is when the success was recorded (0:
    never)."""

    biz_trade_no: str
    amount_fen: int
    description: str
    status: PaymentStatus
    code_url: str
    txn_id: str
    ctime_ms: int
    utime_ms: int
    paid_ms: int


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The payments that succeeded in a window."""

    amount_fen: int
    count: int


@dataclass(frozen=True, slots=True)
class ReconciliationResult:
    """What one reconciliation run did."""

    checked: int
    closed: int
    completed: int


def check_trade_no(biz_trade_no: str) -> str:
    """A business trade number WeChat Pay accepts as ``out_trade_no``."""
    if not _TRADE_NO.fullmatch(biz_trade_no):
        raise PaymentInvalidArgument(
            Reason.INVALID_ARGUMENT,
            "biz_trade_no must be 6-32 letters, digits, '_', '-', '|' or '*'",
            metadata={"field": "biz_trade_no"},
        )
    return biz_trade_no


def check_amount(amount_fen: int) -> int:
    """A positive amount in fen, at most :data:`MAX_AMOUNT_FEN`."""
    if not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise PaymentInvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"amount_fen must be 1..{MAX_AMOUNT_FEN}",
            metadata={"field": "amount_fen"},
        )
    return amount_fen


def check_description(description: str) -> str:
    """What the payer sees: 1 to :data:`MAX_DESCRIPTION` characters, not blank."""
    if not description.strip() or len(description) > MAX_DESCRIPTION:
        raise PaymentInvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"description must be 1-{MAX_DESCRIPTION} characters",
            metadata={"field": "description"},
        )
    return description


def check_window(start_ms: int, end_ms: int) -> tuple[int, int]:
    """A time window ``[start_ms, end_ms)`` that is not empty nor negative."""
    if start_ms < 0 or end_ms <= start_ms:
        raise PaymentInvalidArgument(
            Reason.INVALID_ARGUMENT,
            "need 0 <= start_ms < end_ms",
            metadata={"field": "end_ms"},
        )
    return start_ms, end_ms
