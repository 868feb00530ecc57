"""The account use cases on real SQLite and MariaDB: credits, their idempotency under
concurrency, the account view and the reconciliation with its fencing token."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from kit.sql import SessionFactory
from services.account.domain import MS_PER_DAY, ActivityType, RewardCredit
from services.account.errors import (
    AccountInvalidArgument,
    AccountUnavailable,
    Reason,
    StaleFencingToken,
)
from services.account.repository.dao import AccountDAO
from services.account.service import AccountService
from services.account.tests.conftest import Clock, FakePayments, ledger_rows

pytestmark = pytest.mark.integration

DAY = 1_796_601_600_000  # 2026-12-07 00:00 UTC


def reward(
    rid: int, *, author: int = 42, rewarder: int = 7, amount: int = 100, at_ms: int = DAY
) -> RewardCredit:
    return RewardCredit(
        rid=rid,
        biz="article",
        biz_id=1000 + rid,
        rewarder=rewarder,
        author=author,
        amount_fen=amount,
        at_ms=at_ms,
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def platform_balance(sessions: SessionFactory) -> int:
    async with sessions() as session:
        return await AccountDAO(session).balance(0, 2)


async def test_a_reward_credits_its_author_and_the_platform_never_the_rewarder(
    service: AccountService, sessions: SessionFactory
) -> None:
    assert await service.credit_reward(reward(1, author=42, rewarder=7, amount=100))

    author = await service.account(42)
    assert author.balance_fen == 90
    assert [(a.biz_key, a.amount_fen, a.type, a.at_ms) for a in author.recent] == [
        ("reward:1", 90, ActivityType.REWARD, DAY)
    ]
    rewarder = await service.account(7)
    assert rewarder.balance_fen == 0
    assert rewarder.recent == ()
    assert await platform_balance(sessions) == 10
    assert await ledger_rows(sessions, "reward:1") == 2


async def test_a_duplicate_credits_nothing(
    service: AccountService, sessions: SessionFactory
) -> None:
    duplicates = metric("webook_account_reward_credits_total", outcome="duplicate")
    assert await service.credit_reward(reward(2, amount=1000))
    assert not await service.credit_reward(reward(2, amount=1000))
    # Even one that says otherwise: the business key decides.
    assert not await service.credit_reward(reward(2, amount=5000, author=43))
    assert (await service.account(42)).balance_fen == 900
    assert (await service.account(43)).balance_fen == 0
    assert await platform_balance(sessions) == 100
    assert await ledger_rows(sessions) == 2
    assert metric("webook_account_reward_credits_total", outcome="duplicate") == duplicates + 2


async def test_ten_concurrent_copies_of_an_event_credit_once(
    service: AccountService, sessions: SessionFactory
) -> None:
    outcomes = await asyncio.gather(
        *(service.credit_reward(reward(3, amount=1234)) for _ in range(10))
    )
    assert sorted(outcomes) == [False] * 9 + [True]
    assert (await service.account(42)).balance_fen == 1234 - 123
    assert await platform_balance(sessions) == 123
    assert await ledger_rows(sessions) == 2


async def test_concurrent_rewards_of_many_authors_add_up_exactly(
    service: AccountService, sessions: SessionFactory
) -> None:
    rewards = [reward(100 + i, author=50 + i % 4, amount=10 + i) for i in range(24)]
    # Each reward twice, all at once: the authors' and the platform's rows are contended.
    outcomes = await asyncio.gather(*(service.credit_reward(r) for r in rewards + rewards))
    assert sum(outcomes) == len(rewards)
    for author in range(50, 54):
        expected = sum(r.amount_fen - r.amount_fen // 10 for r in rewards if r.author == author)
        assert (await service.account(author)).balance_fen == expected
    assert await platform_balance(sessions) == sum(r.amount_fen // 10 for r in rewards)
    assert await ledger_rows(sessions) == 2 * len(rewards)


async def test_the_platform_percent_is_read_at_each_credit(
    service: AccountService, percent: list[int], sessions: SessionFactory
) -> None:
    await service.credit_reward(reward(4, amount=100))
    percent[0] = 25
    await service.credit_reward(reward(5, amount=100))
    view = await service.account(42)
    assert view.balance_fen == 90 + 75
    # Newest first; each row keeps the split of its time.
    assert [(a.biz_key, a.amount_fen) for a in view.recent] == [("reward:5", 75), ("reward:4", 90)]
    assert await platform_balance(sessions) == 10 + 25


async def test_an_account_shows_its_twenty_newest_rows(service: AccountService) -> None:
    for rid in range(1, 26):
        await service.credit_reward(reward(rid, amount=10))
    view = await service.account(42)
    assert view.balance_fen == 25 * 9
    assert [a.biz_key for a in view.recent] == [f"reward:{rid}" for rid in range(25, 5, -1)]
    for uid in (0, -1):
        with pytest.raises(AccountInvalidArgument) as refused:
            await service.account(uid)
        assert refused.value.reason == Reason.INVALID_USER


async def test_reconciliation_compares_the_days_credits_with_the_payments(
    service: AccountService, payments: FakePayments, clock: Clock
) -> None:
    # Rewards paid yesterday, today and at the edges of today's window.
    for rid, at, amount in (
        (1, DAY - 1, 7),
        (2, DAY, 100),
        (3, DAY + 5, 33),
        (4, DAY + MS_PER_DAY - 1, 1),
        (5, DAY + MS_PER_DAY, 50),
    ):
        await service.credit_reward(reward(rid, amount=amount, at_ms=at))
        payments.paid.append((at, amount))
    result = await service.reconcile(DAY, 1)
    assert (result.day_start_ms, result.credited_fen, result.paid_fen) == (DAY, 134, 134)
    assert result.difference_fen == 0
    assert payments.calls == [(DAY, DAY + MS_PER_DAY)]
    assert metric("webook_account_reconciliation_difference_fen") == 0

    # A payment that succeeded today whose reward was never credited (an event lost).
    payments.paid.append((DAY + 10, 500))
    mismatches = metric("webook_account_reconciliations_total", outcome="mismatch")
    result = await service.reconcile(DAY, 2)
    assert (result.credited_fen, result.paid_fen, result.difference_fen) == (134, 634, 500)
    assert metric("webook_account_reconciliation_difference_fen") == 500
    assert metric("webook_account_reconciliations_total", outcome="mismatch") == mismatches + 1

    # Zero: yesterday (the clock says today, 10:00 UTC).
    clock.now_ms = DAY + MS_PER_DAY + 1
    result = await service.reconcile(0, 3)
    assert (result.day_start_ms, result.credited_fen, result.paid_fen) == (DAY, 134, 634)


async def test_a_stale_token_is_refused_and_an_equal_one_accepted(
    service: AccountService, sessions: SessionFactory
) -> None:
    await service.reconcile(DAY, 7)
    stale = metric("webook_account_reconciliations_total", outcome="stale_token")
    with pytest.raises(StaleFencingToken) as refused:
        await service.reconcile(DAY, 6)
    assert refused.value.reason == Reason.STALE_FENCING_TOKEN
    assert refused.value.metadata["highest_token"] == "7"
    assert metric("webook_account_reconciliations_total", outcome="stale_token") == stale + 1
    await service.reconcile(DAY, 7)
    await service.reconcile(DAY, 2**63 - 1)
    for bad in (0, -1, 2**63):
        with pytest.raises(AccountInvalidArgument) as invalid:
            await service.reconcile(DAY, bad)
        assert invalid.value.reason == Reason.INVALID_FENCING_TOKEN
    async with sessions() as session:
        row = await AccountDAO(session).reconciliation(DAY)
        assert row is not None
        assert row.fencing_token == 2**63 - 1


async def test_a_run_overtaken_while_it_asked_the_payments_records_nothing(
    service: AccountService, payments: FakePayments, sessions: SessionFactory
) -> None:
    payments.paid.append((DAY, 10))
    payments.gate = asyncio.Event()
    slow = asyncio.create_task(service.reconcile(DAY, 1))
    await payments.entered.wait()
    # The job was taken over meanwhile and the newer run finished first.
    payments.gate.set()
    await service.reconcile(DAY, 2)
    with pytest.raises(StaleFencingToken):
        await slow
    async with sessions() as session:
        row = await AccountDAO(session).reconciliation(DAY)
        assert row is not None
        assert (row.fencing_token, row.paid_fen, row.difference_fen) == (2, 10, 10)


async def test_a_failing_payment_service_fails_the_run_and_records_nothing(
    service: AccountService, payments: FakePayments, sessions: SessionFactory
) -> None:
    payments.failing = AccountUnavailable(Reason.RECONCILIATION_FAILED, "payment away")
    failed = metric("webook_account_reconciliations_total", outcome="failed")
    with pytest.raises(AccountUnavailable) as refused:
        await service.reconcile(DAY, 1)
    assert refused.value.reason == Reason.RECONCILIATION_FAILED
    assert metric("webook_account_reconciliations_total", outcome="failed") == failed + 1
    async with sessions() as session:
        assert await AccountDAO(session).reconciliation(DAY) is None
    with pytest.raises(AccountInvalidArgument) as invalid:
        await service.reconcile(-5, 2)
    assert invalid.value.reason == Reason.INVALID_DAY


async def test_racing_first_runs_leave_the_highest_token_and_its_result(
    service: AccountService, payments: FakePayments, sessions: SessionFactory
) -> None:
    payments.paid.append((DAY, 10))
    outcomes = await asyncio.gather(
        *(service.reconcile(DAY, token) for token in (3, 1, 6, 2, 5, 4)), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, StaleFencingToken), outcome
        else:
            assert outcome.paid_fen == 10
    assert not isinstance(outcomes[2], BaseException)  # token 6 never loses
    async with sessions() as session:
        row = await AccountDAO(session).reconciliation(DAY)
        assert row is not None
        assert row.fencing_token == 6
    with pytest.raises(StaleFencingToken):
        await service.reconcile(DAY, 5)
