"""Use cases of the reward service and the ports they need.

:class:`RewardService`:

- ``pre_reward``: validates the request (:mod:`services.reward.domain`; the amount bounds
  are read at each call), asks the article service who wrote the article (it must be
  published, and not by the rewarder), records an INIT reward, opens its payment
  (``reward-<rid>``) and stores the code URL. Each call is a new reward: the front end's
  request carries no key of its own (docs/reward.md, "Idempotency"). A payment that cannot
  be opened leaves an INIT reward nobody was told about, which is never paid.
- ``apply_payment``: a payment's status (an event, or a lookup) moves its reward out of
  INIT, once; the transaction that makes it PAYED also records ``RewardPaid`` in the
  outbox. Duplicates, stale or out-of-order reports, other businesses' payments and
  amounts that do not match change nothing.
- ``get_reward``: only the rewarder sees a reward (anyone else: not found). A reward still
  INIT ``repair_after`` after it was made asks the payment service, so a missed event is
  repaired by the rewarder's polling.

Transactions aborted by a deadlock or lock timeout (:class:`kit.sql.WriteConflict`) are
retried with a jittered back-off (:func:`kit.sql.transact`) before answering
``REWARD_CONCURRENT_CONFLICT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.reward.domain import (
    AmountBounds,
    NewReward,
    PaymentUpdate,
    Reward,
    RewardStatus,
    biz_trade_no,
    check_request,
    check_uid,
    reward_id_of,
    reward_status_after,
)
from services.reward.errors import Reason, RewardInvalidArgument, RewardNotFound, RewardUnavailable
from services.reward.peers import Articles, Payments

logger = logging.getLogger(__name__)

T = TypeVar("T")
_WRITE_ATTEMPTS = 8


class RewardRepository(Protocol):
    """Rewards, inside one unit of work."""

    async def create(self, new: NewReward, *, now_ms: int) -> Reward:
        """Insert an INIT reward."""
        ...

    async def get(self, rid: int) -> Reward | None:
        """Reward ``rid``, if any."""
        ...

    async def set_code_url(self, rid: int, code_url: str, *, now_ms: int) -> None:
        """Record the payment's code URL."""
        ...

    async def leave_init(self, rid: int, status: RewardStatus, *, now_ms: int) -> Reward | None:
        """Move an INIT reward to ``status``; the reward after, or ``None`` if it was not
        INIT (exactly one of concurrent identical calls gets it)."""
        ...


class RewardEvents(Protocol):
    """The events of a transaction (recorded if and only if it commits)."""

    def reward_paid(self, reward: Reward, *, at_ms: int) -> None:
        """Record ``RewardPaid`` for ``reward``."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def rewards(self) -> RewardRepository:
        """The repository bound to this transaction."""
        ...

    @property
    def events(self) -> RewardEvents:
        """The events bound to this transaction."""
        ...


def wall_ms() -> int:
    """Wall-clock milliseconds (rows compare times across processes)."""
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> RewardUnavailable:
    return RewardUnavailable(Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry")


def _not_found(rid: int) -> RewardNotFound:
    return RewardNotFound(Reason.NOT_FOUND, f"reward {rid} not found")


class RewardService:
    """The reward use cases (see the module).

    Args:
        units: a new unit of work per transaction.
        articles / payments: the peers.
        bounds: the amount bounds in force (read at each PreReward).
        repair_after_ms: how old an INIT reward must be before GetReward asks the payment
            service (read at each GetReward).
        clock: wall-clock milliseconds.
    """

    def __init__(
        self,
        units: Callable[[], UnitOfWork],
        *,
        articles: Articles,
        payments: Payments,
        bounds: Callable[[], AmountBounds],
        repair_after_ms: Callable[[], int],
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._units = units
        self._articles = articles
        self._payments = payments
        self._bounds = bounds
        self._repair_after_ms = repair_after_ms
        self._clock = clock

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await transact(
            self._units, work, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def pre_reward(self, biz: str, biz_id: int, uid: int, amount_fen: int) -> Reward:
        """A new reward of ``amount_fen`` by ``uid`` to the author of ``(biz, biz_id)``,
        its payment opened (``code_url`` set)."""
        check_request(biz, biz_id, uid, amount_fen, self._bounds())
        author = await self._articles.published_author(biz_id)
        if author is None:
            raise RewardNotFound(
                Reason.TARGET_NOT_FOUND,
                f"article {biz_id} is not published",
                metadata={"field": "biz_id"},
            )
        if author == uid:
            raise RewardInvalidArgument(
                Reason.SELF, "you cannot reward your own article", metadata={"field": "biz_id"}
            )
        new = NewReward(biz=biz, biz_id=biz_id, uid=uid, target_uid=author, amount_fen=amount_fen)
        now = self._clock()
        reward = await self._write(lambda uow: uow.rewards.create(new, now_ms=now))
        code_url = await self._payments.prepay(
            biz_trade_no(reward.id), amount_fen, f"webook reward for {biz} {biz_id}"
        )
        done = self._clock()
        await self._write(lambda uow: uow.rewards.set_code_url(reward.id, code_url, now_ms=done))
        logger.info(
            "reward opened",
            extra={
                "rid": reward.id,
                "biz": biz,
                "biz_id": biz_id,
                "uid": uid,
                "amount_fen": amount_fen,
            },
        )
        return Reward(
            id=reward.id,
            biz=reward.biz,
            biz_id=reward.biz_id,
            uid=reward.uid,
            target_uid=reward.target_uid,
            amount_fen=reward.amount_fen,
            status=reward.status,
            code_url=code_url,
            ctime_ms=reward.ctime_ms,
            utime_ms=done,
        )

    async def get_reward(self, rid: int, uid: int) -> Reward:
        """Reward ``rid`` as its rewarder ``uid`` sees it (see the module for the repair)."""
        check_uid(uid)
        if rid <= 0:
            raise _not_found(rid)
        reward = await self._read(rid)
        if reward is None or reward.uid != uid:
            raise _not_found(rid)
        if reward.status is RewardStatus.INIT and self._due_for_repair(reward):
            reward = await self._repair(reward)
        return reward

    def _due_for_repair(self, reward: Reward) -> bool:
        return self._clock() - reward.ctime_ms >= self._repair_after_ms()

    async def _repair(self, reward: Reward) -> Reward:
        try:
            update = await self._payments.lookup(biz_trade_no(reward.id))
        except RewardUnavailable:
            return reward  # the stored status stands; the next poll asks again
        if update is None or not await self.apply_payment(update):
            return reward
        logger.info("reward repaired from payment", extra={"rid": reward.id})
        return await self._read(reward.id) or reward

    async def _read(self, rid: int) -> Reward | None:
        async with self._units() as uow:
            return await uow.rewards.get(rid)

    async def apply_payment(self, update: PaymentUpdate) -> bool:
        """Apply a payment's status to its reward (see the module); whether it changed."""
        rid = reward_id_of(update.biz_trade_no)
        target = reward_status_after(update.status)
        if rid is None or target is None:
            return False
        now = self._clock()

        async def change(uow: UnitOfWork) -> bool:
            current = await uow.rewards.get(rid)
            if current is None:
                logger.warning(
                    "payment of an unknown reward ignored",
                    extra={"biz_trade_no": update.biz_trade_no},
                )
                return False
            if current.amount_fen != update.amount_fen:
                logger.error(
                    "payment amount differs from the reward's; ignored",
                    extra={
                        "rid": rid,
                        "reward_fen": current.amount_fen,
                        "payment_fen": update.amount_fen,
                    },
                )
                return False
            changed = await uow.rewards.leave_init(rid, target, now_ms=now)
            if changed is None:
                return False
            if changed.status is RewardStatus.PAYED:
                uow.events.reward_paid(changed, at_ms=update.at_ms or now)
            return True

        changed = await self._write(change)
        if changed:
            logger.info("reward status changed", extra={"rid": rid, "status": target.name})
        return changed
