"""Use cases of the account service and the ports they need.

- :meth:`AccountService.credit_reward`: a paid reward's two shares (:func:`split_reward`
  with the live platform percent) credited in **one** transaction, idempotent on the
  reward's business key: a duplicate delivery, even concurrent with the first, credits
  nothing and returns ``False``.
- :meth:`AccountService.account`: a user's balance and newest ledger rows.
- :meth:`AccountService.reconcile`: a day's reward credits against the payments that
  succeeded (:class:`~services.account.peers.PaymentSums`), under the scheduler's fencing
  token: a token lower than the highest accepted is refused before the run and again when
  its result is recorded (a run that paused past a newer one records nothing). The
  difference is exported as ``webook_account_reconciliation_difference_fen`` and logged.

Transactions aborted by a deadlock or lock timeout (:class:`kit.sql.WriteConflict`) are
retried a few times with a jittered back-off (:func:`kit.sql.transact`) before answering
``ACCOUNT_CONCURRENT_CONFLICT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.account.domain import (
    AccountView,
    Reconciliation,
    RewardCredit,
    Shares,
    check_uid,
    day_window,
    split_reward,
)
from services.account.errors import (
    AccountInvalidArgument,
    AccountUnavailable,
    Reason,
    StaleFencingToken,
)
from services.account.metrics import RECONCILIATION_DIFFERENCE, RECONCILIATIONS, REWARD_CREDITS
from services.account.peers import PaymentSums

logger = logging.getLogger(__name__)

T = TypeVar("T")

RECONCILIATION_JOB: Final = "reconciliation"
"""The fencing row of ``RunReconciliation`` (one job, whatever the scheduler names it)."""
RECENT_ACTIVITIES: Final = 20
MAX_FENCING_TOKEN: Final = 2**63 - 1
_WRITE_ATTEMPTS = 8


class AccountRepository(Protocol):
    """Accounts, their ledger and the reconciliation's records, inside one unit of work."""

    async def credit_reward(self, credit: RewardCredit, shares: Shares, *, now_ms: int) -> bool:
        """Credit both shares unless the reward was credited; whether this call did."""
        ...

    async def account(self, uid: int, *, recent: int) -> AccountView:
        """``uid``'s balance and its ``recent`` newest ledger rows."""
        ...

    async def accept_token(self, job: str, token: int, *, now_ms: int) -> int:
        """Record ``token`` unless a higher one is; the highest recorded afterwards."""
        ...

    async def credited_between(self, start_ms: int, end_ms: int) -> int:
        """Reward credits (both shares) of rewards paid in ``[start_ms, end_ms)``."""
        ...

    async def save_reconciliation(self, result: Reconciliation, *, token: int, now_ms: int) -> None:
        """Record the day's result (replacing an earlier run's)."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def accounts(self) -> AccountRepository:
        """The repository bound to this transaction."""
        ...


def wall_ms() -> int:
    """Wall-clock time in ms."""
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> AccountUnavailable:
    return AccountUnavailable(
        Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry"
    )


def _stale(token: int, highest: int) -> StaleFencingToken:
    return StaleFencingToken(
        Reason.STALE_FENCING_TOKEN,
        f"fencing token {token} is stale: token {highest} was already accepted",
        metadata={"fencing_token": str(token), "highest_token": str(highest)},
    )


class AccountService:
    """The account use cases."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        payments: PaymentSums,
        *,
        platform_percent: Callable[[], int],
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._uow = unit_of_work
        self._payments = payments
        self._percent = platform_percent
        self._clock = clock

    async def _write(self, change: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await transact(
            self._uow, change, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def credit_reward(self, credit: RewardCredit) -> bool:
        """Credit ``credit.author`` and the platform (see the module); whether this call
        credited (``False``: the reward was already credited)."""
        shares = split_reward(credit.amount_fen, self._percent())
        now = self._clock()
        credited = await self._write(
            lambda uow: uow.accounts.credit_reward(credit, shares, now_ms=now)
        )
        REWARD_CREDITS.labels("credited" if credited else "duplicate").inc()
        logger.info(
            "reward credited" if credited else "reward already credited",
            extra={
                "biz_key": credit.biz_key,
                "author": credit.author,
                "author_fen": shares.author,
                "platform_fen": shares.platform,
            },
        )
        return credited

    async def account(self, uid: int) -> AccountView:
        """``uid``'s balance and newest ledger rows."""
        check_uid(uid)
        async with self._uow() as uow:
            return await uow.accounts.account(uid, recent=RECENT_ACTIVITIES)

    async def reconcile(self, day_start_ms: int, fencing_token: int) -> Reconciliation:
        """Compare the day's reward credits with the payments that succeeded (see the
        module), under ``fencing_token`` (1 to 2**63 - 1)."""
        if not 0 < fencing_token <= MAX_FENCING_TOKEN:
            raise AccountInvalidArgument(
                Reason.INVALID_FENCING_TOKEN,
                f"fencing_token must be between 1 and {MAX_FENCING_TOKEN}",
                metadata={"field": "fencing_token"},
            )
        start, end = day_window(day_start_ms, now_ms=self._clock())
        try:
            await self._write(lambda uow: self._fence(uow, fencing_token))
            paid = await self._payments.sum_succeeded(start, end)
            result = await self._write(
                lambda uow: self._record(uow, start, end, paid.amount_fen, fencing_token)
            )
        except StaleFencingToken:
            RECONCILIATIONS.labels("stale_token").inc()
            raise
        except AccountUnavailable as exc:
            RECONCILIATIONS.labels("failed").inc()
            logger.warning(
                "reconciliation failed",
                extra={"day_start_ms": start, "fencing_token": fencing_token, "error": str(exc)},
            )
            raise
        RECONCILIATION_DIFFERENCE.set(result.difference_fen)
        balanced = result.difference_fen == 0
        RECONCILIATIONS.labels("balanced" if balanced else "mismatch").inc()
        logger.log(
            logging.INFO if balanced else logging.WARNING,
            "reconciliation balanced" if balanced else "reconciliation mismatch",
            extra={
                "day_start_ms": start,
                "credited_fen": result.credited_fen,
                "paid_fen": result.paid_fen,
                "paid_count": paid.count,
                "difference_fen": result.difference_fen,
                "fencing_token": fencing_token,
            },
        )
        return result

    async def _fence(self, uow: UnitOfWork, token: int) -> None:
        highest = await uow.accounts.accept_token(RECONCILIATION_JOB, token, now_ms=self._clock())
        if highest > token:
            raise _stale(token, highest)

    async def _record(
        self, uow: UnitOfWork, start: int, end: int, paid_fen: int, token: int
    ) -> Reconciliation:
        # The token again, in the transaction that records: it locks the fencing row, so a
        # run that paused after its first check cannot record over a newer run's result.
        await self._fence(uow, token)
        credited = await uow.accounts.credited_between(start, end)
        result = Reconciliation(day_start_ms=start, credited_fen=credited, paid_fen=paid_fen)
        await uow.accounts.save_reconciliation(result, token=token, now_ms=self._clock())
        return result
