"""The reward use cases on real SQLite and MariaDB, with the peers in memory.

Covered: the normal path (INIT with a code URL, then PAYED with exactly one ``RewardPaid``
in the outbox), every refusal of PreReward (and that a refusal records nothing), the amount
bounds in force, duplicate, stale, out-of-order, foreign and mismatched payment reports,
concurrent reports of one success, GetReward for the rewarder only, and the repair of a
missed event by GetReward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from sqlalchemy import func, select

from kit.errors import AppError, ErrorKind
from services.reward.domain import AmountBounds, PaymentStatus, PaymentUpdate, RewardStatus
from services.reward.errors import DOMAIN, Reason
from services.reward.repository.dao import RewardRow
from services.reward.tests.conftest import ARTICLE, AUTHOR, REPAIR_AFTER_MS, RewardStack

pytestmark = pytest.mark.integration

READER = 42


async def refusal(call: Awaitable[object]) -> tuple[ErrorKind, str]:
    """The kind and reason of a call that must fail."""
    with pytest.raises(AppError) as caught:
        await call
    assert caught.value.domain == DOMAIN
    assert caught.value.message
    return caught.value.kind, caught.value.reason


async def reward_rows(stack: RewardStack) -> int:
    """How many rewards are stored."""
    async with stack.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(RewardRow))).scalar_one())


def report(rid: int, amount_fen: int, status: PaymentStatus, at_ms: int = 5) -> PaymentUpdate:
    """What the payment service says of reward ``rid``'s payment."""
    return PaymentUpdate(f"reward-{rid}", amount_fen, status, at_ms)


async def test_a_reward_is_opened_then_paid_and_announced_once(stack: RewardStack) -> None:
    opened = await stack.service.pre_reward("article", ARTICLE, READER, 100)
    assert opened.id > 0
    assert opened.status is RewardStatus.INIT
    assert opened.code_url == stack.payments.code_url(f"reward-{opened.id}")
    assert [(no, fen) for no, fen, _ in stack.payments.prepaid] == [(f"reward-{opened.id}", 100)]
    seen = await stack.service.get_reward(opened.id, READER)
    assert (seen.status, seen.amount_fen, seen.biz, seen.biz_id) == (
        RewardStatus.INIT,
        100,
        "article",
        ARTICLE,
    )
    assert (seen.target_uid, seen.code_url) == (AUTHOR, opened.code_url)
    assert await stack.paid_events() == []

    assert await stack.service.apply_payment(report(opened.id, 100, PaymentStatus.SUCCESS, 77))
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.PAYED
    [paid] = await stack.paid_events()
    assert (paid.rid, paid.biz, paid.biz_id, paid.uid, paid.target_uid) == (
        opened.id,
        "article",
        ARTICLE,
        READER,
        AUTHOR,
    )
    assert (paid.amount_fen, paid.at_ms) == (100, 77)

    # A redelivered success, then reports that come too late: nothing moves, nothing more
    # is announced.
    for status in (PaymentStatus.SUCCESS, PaymentStatus.FAILED, PaymentStatus.INIT):
        assert not await stack.service.apply_payment(report(opened.id, 100, status))
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.PAYED
    assert len(await stack.paid_events()) == 1

    # Each PreReward is a new reward with a payment of its own.
    again = await stack.service.pre_reward("article", ARTICLE, READER, 100)
    assert again.id != opened.id
    assert again.code_url != opened.code_url


async def test_prereward_refusals_record_nothing(stack: RewardStack) -> None:
    service = stack.service
    cases = [
        (("article", ARTICLE, AUTHOR, 100), ErrorKind.INVALID_ARGUMENT, Reason.SELF),
        (("article", 404, READER, 100), ErrorKind.NOT_FOUND, Reason.TARGET_NOT_FOUND),
        (("article", ARTICLE, READER, 0), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_AMOUNT),
        (("article", ARTICLE, READER, -5), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_AMOUNT),
        (("article", ARTICLE, READER, 100_001), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_AMOUNT),
        (
            ("article", ARTICLE, READER, 2**63 - 1),
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_AMOUNT,
        ),
        (("video", ARTICLE, READER, 100), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_BIZ),
        (("article", 0, READER, 100), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_BIZ),
        (("article", ARTICLE, 0, 100), ErrorKind.INVALID_ARGUMENT, Reason.INVALID_USER),
    ]
    for (biz, biz_id, uid, amount), kind, reason in cases:
        assert await refusal(service.pre_reward(biz, biz_id, uid, amount)) == (kind, reason), (
            biz,
            biz_id,
            uid,
            amount,
        )
    # Withdrawn: no longer published.
    del stack.articles.published[ARTICLE]
    assert await refusal(service.pre_reward("article", ARTICLE, READER, 100)) == (
        ErrorKind.NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    )
    assert stack.payments.prepaid == []
    assert await reward_rows(stack) == 0


async def test_the_amount_bounds_in_force_apply(stack: RewardStack) -> None:
    stack.bounds = AmountBounds(min_fen=10, max_fen=20)
    for amount in (9, 21):
        with pytest.raises(AppError) as caught:
            await stack.service.pre_reward("article", ARTICLE, READER, amount)
        assert caught.value.reason == Reason.INVALID_AMOUNT
        assert caught.value.metadata == {"field": "amount_fen", "min_fen": "10", "max_fen": "20"}
    for amount in (10, 20):
        assert (await stack.service.pre_reward("article", ARTICLE, READER, amount)).id > 0


async def test_peers_down_refuse_as_unavailable(stack: RewardStack) -> None:
    stack.articles.down = True
    assert await refusal(stack.service.pre_reward("article", ARTICLE, READER, 1)) == (
        ErrorKind.UNAVAILABLE,
        Reason.UNAVAILABLE,
    )
    assert await reward_rows(stack) == 0
    stack.articles.down = False
    stack.payments.down = True
    assert await refusal(stack.service.pre_reward("article", ARTICLE, READER, 1)) == (
        ErrorKind.UNAVAILABLE,
        Reason.UNAVAILABLE,
    )
    # The reward nobody was told about stays INIT without a code URL: never paid.
    async with stack.engine.connect() as conn:
        rows = (await conn.execute(select(RewardRow.status, RewardRow.code_url))).all()
    assert [tuple(row) for row in rows] == [(int(RewardStatus.INIT), "")]


async def test_failed_stale_foreign_and_mismatched_reports(stack: RewardStack) -> None:
    service = stack.service
    first = await service.pre_reward("article", ARTICLE, READER, 300)
    # Reports that move nothing: still INIT at the payment, refunded only, the amount of
    # another order, another business's payment, a reward that does not exist.
    for update in (
        report(first.id, 300, PaymentStatus.INIT),
        report(first.id, 300, PaymentStatus.REFUND),
        report(first.id, 301, PaymentStatus.SUCCESS),
        PaymentUpdate(f"order-{first.id}", 300, PaymentStatus.SUCCESS, 1),
        PaymentUpdate(f"reward-{first.id}x", 300, PaymentStatus.SUCCESS, 1),
        report(first.id + 1000, 300, PaymentStatus.SUCCESS),
    ):
        assert not await service.apply_payment(update), update
    assert (await service.get_reward(first.id, READER)).status is RewardStatus.INIT

    assert await service.apply_payment(report(first.id, 300, PaymentStatus.FAILED))
    assert not await service.apply_payment(report(first.id, 300, PaymentStatus.FAILED))
    # FAILED is final, as the payment's own status is: a report of success after it is a
    # stale or bogus one.
    assert not await service.apply_payment(report(first.id, 300, PaymentStatus.SUCCESS))
    assert (await service.get_reward(first.id, READER)).status is RewardStatus.FAILED
    assert await stack.paid_events() == []


async def test_only_the_rewarder_reads_a_reward(stack: RewardStack) -> None:
    opened = await stack.service.pre_reward("article", ARTICLE, READER, 5)
    for rid, uid in ((opened.id, READER + 1), (opened.id, AUTHOR), (opened.id + 1, READER)):
        assert await refusal(stack.service.get_reward(rid, uid)) == (
            ErrorKind.NOT_FOUND,
            Reason.NOT_FOUND,
        )
    assert await refusal(stack.service.get_reward(0, READER)) == (
        ErrorKind.NOT_FOUND,
        Reason.NOT_FOUND,
    )
    assert await refusal(stack.service.get_reward(opened.id, 0)) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_USER,
    )
    assert (await stack.service.get_reward(opened.id, READER)).id == opened.id


async def test_get_reward_repairs_a_missed_event(stack: RewardStack) -> None:
    opened = await stack.service.pre_reward("article", ARTICLE, READER, 50)
    stack.payments.settle(f"reward-{opened.id}", PaymentStatus.SUCCESS, at_ms=99)
    # Young: the event may still come; the payment service is not asked.
    stack.clock.now_ms += REPAIR_AFTER_MS - 1
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.INIT
    assert stack.payments.lookups == []

    stack.clock.now_ms += 1
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.PAYED
    assert [(e.rid, e.at_ms) for e in await stack.paid_events()] == [(opened.id, 99)]
    # Settled: never asked again; the late event changes nothing.
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.PAYED
    assert len(stack.payments.lookups) == 1
    assert not await stack.service.apply_payment(report(opened.id, 50, PaymentStatus.SUCCESS))
    assert len(await stack.paid_events()) == 1

    # The payment service down, or knowing nothing yet: the stored status stands.
    other = await stack.service.pre_reward("article", ARTICLE, READER, 60)
    stack.clock.now_ms += REPAIR_AFTER_MS
    stack.payments.down = True
    assert (await stack.service.get_reward(other.id, READER)).status is RewardStatus.INIT
    stack.payments.down = False
    del stack.payments.payments[f"reward-{other.id}"]
    assert (await stack.service.get_reward(other.id, READER)).status is RewardStatus.INIT


async def test_concurrent_reports_of_one_success_announce_it_once(stack: RewardStack) -> None:
    opened = await stack.service.pre_reward("article", ARTICLE, READER, 70)
    stack.payments.settle(f"reward-{opened.id}", PaymentStatus.SUCCESS)
    stack.clock.now_ms += REPAIR_AFTER_MS
    update = report(opened.id, 70, PaymentStatus.SUCCESS)
    async with asyncio.TaskGroup() as group:
        applied = [group.create_task(stack.service.apply_payment(update)) for _ in range(8)]
        read = [group.create_task(stack.service.get_reward(opened.id, READER)) for _ in range(4)]
    # The repairs by GetReward raced the consumer's reports: one of them all changed it.
    assert sum(task.result() for task in applied) <= 1
    assert all(task.result().id == opened.id for task in read)
    assert (await stack.service.get_reward(opened.id, READER)).status is RewardStatus.PAYED
    assert [e.rid for e in await stack.paid_events()] == [opened.id]
