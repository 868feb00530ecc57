"""Statuses move forward only, and mean on the wire what they mean in SQL."""

from __future__ import annotations

import pytest

from services.payment.domain import PaymentStatus, can_move, check_trade_no
from services.payment.errors import PaymentInvalidArgument
from webook.payment.v1 import payment_pb2

INIT, SUCCESS, FAILED, REFUND = (
    PaymentStatus.INIT,
    PaymentStatus.SUCCESS,
    PaymentStatus.FAILED,
    PaymentStatus.REFUND,
)


def test_statuses_are_the_proto_values() -> None:
    assert {s.name: int(s) for s in PaymentStatus} == {
        name.removeprefix("PAYMENT_STATUS_"): number
        for name, number in payment_pb2.PaymentStatus.items()
        if number
    }


def test_only_forward_moves_are_allowed() -> None:
    allowed = {(INIT, SUCCESS), (INIT, FAILED), (INIT, REFUND), (SUCCESS, REFUND)}
    for current in PaymentStatus:
        for new in PaymentStatus:
            assert can_move(current, new) is ((current, new) in allowed), (current, new)


@pytest.mark.parametrize("number", ["reward-1", "a_b-c|d*e1", "x" * 32])
def test_trade_numbers_wechat_pay_accepts(number: str) -> None:
    assert check_trade_no(number) == number


@pytest.mark.parametrize("number", ["", "abc12", "x" * 33, "reward 12", "奖励-123456"])
def test_trade_numbers_wechat_pay_refuses(number: str) -> None:
    with pytest.raises(PaymentInvalidArgument):
        check_trade_no(number)
