"""Storage adapters of the account service: SQL only (the ledger is the truth).

- :class:`SqlAccountRepository` implements
  :class:`services.account.service.AccountRepository`: a reward's two ledger rows and the two
  balance changes go to SQL in the caller's one transaction (see
  :mod:`services.account.repository.dao` for why a duplicate credits nothing);
- :class:`SqlUnitOfWork` implements :class:`services.account.service.UnitOfWork`; deadlocks
  and lock timeouts leave it as :class:`kit.sql.WriteConflict` (retried by the service).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import SessionFactory
from kit.sql import SqlUnitOfWork as BaseUnitOfWork
from services.account.domain import (
    PLATFORM_UID,
    AccountType,
    AccountView,
    Activity,
    ActivityType,
    Reconciliation,
    RewardCredit,
    Shares,
)
from services.account.repository.dao import AccountDAO, ActivityRow

__all__ = ["SqlAccountRepository", "SqlUnitOfWork"]

REWARD_TYPES = (ActivityType.REWARD, ActivityType.REWARD_PLATFORM_SHARE)


def _activity(row: ActivityRow) -> Activity:
    return Activity(
        biz_key=row.biz_key, amount_fen=row.amount, type=ActivityType(row.type), at_ms=row.at_ms
    )


class SqlAccountRepository:
    """Accounts and their ledger in SQL, inside one unit of work's session."""

    def __init__(self, dao: AccountDAO) -> None:
        self._dao = dao

    async def credit_reward(self, credit: RewardCredit, shares: Shares, *, now_ms: int) -> bool:
        """Credit both shares unless the reward was credited; whether this call did."""
        # The platform's row first: its key, (biz_key, 0), is the same whatever author an
        # event names, so it is what decides whether the reward was credited.
        first = await self._dao.insert_activity(
            biz_key=credit.biz_key,
            account=PLATFORM_UID,
            account_type=AccountType.SYSTEM,
            amount=shares.platform,
            type=ActivityType.REWARD_PLATFORM_SHARE,
            at_ms=credit.at_ms,
            now=now_ms,
        )
        if not first:
            return False
        await self._dao.insert_activity(
            biz_key=credit.biz_key,
            account=credit.author,
            account_type=AccountType.USER,
            amount=shares.author,
            type=ActivityType.REWARD,
            at_ms=credit.at_ms,
            now=now_ms,
        )
        # Same lock order in every transaction (the platform's row, uid 0, first), so two
        # credits cannot deadlock on the balances.
        await self._dao.add_to_balance(
            PLATFORM_UID, AccountType.SYSTEM, shares.platform, now=now_ms
        )
        await self._dao.add_to_balance(credit.author, AccountType.USER, shares.author, now=now_ms)
        return True

    async def account(self, uid: int, *, recent: int) -> AccountView:
        """``uid``'s balance and newest ledger rows (zero and none for a new user)."""
        rows = await self._dao.recent(uid, recent)
        return AccountView(
            uid=uid,
            balance_fen=await self._dao.balance(uid, AccountType.USER),
            recent=tuple(_activity(row) for row in rows),
        )

    async def platform_balance(self) -> int:
        """The platform account's balance."""
        return await self._dao.balance(PLATFORM_UID, AccountType.SYSTEM)

    async def accept_token(self, job: str, token: int, *, now_ms: int) -> int:
        """Record ``token`` unless a higher one is; the highest recorded afterwards."""
        return await self._dao.accept_token(job, token, now=now_ms)

    async def credited_between(self, start_ms: int, end_ms: int) -> int:
        """Reward credits (both shares) of rewards paid in ``[start_ms, end_ms)``."""
        return await self._dao.sum_activities(REWARD_TYPES, start_ms, end_ms)

    async def save_reconciliation(self, result: Reconciliation, *, token: int, now_ms: int) -> None:
        """Record the day's result."""
        await self._dao.save_reconciliation(
            result.day_start_ms,
            credited=result.credited_fen,
            paid=result.paid_fen,
            token=token,
            now=now_ms,
        )


class SqlUnitOfWork(BaseUnitOfWork[SqlAccountRepository]):
    """One SQL transaction with a :class:`SqlAccountRepository` bound to it."""

    def __init__(self, sessions: SessionFactory) -> None:
        super().__init__(sessions)

    @property
    def accounts(self) -> SqlAccountRepository:
        """The repository of this transaction (only inside ``async with``)."""
        return self.repository

    def open_repository(self, session: AsyncSession) -> SqlAccountRepository:
        return SqlAccountRepository(AccountDAO(session))
