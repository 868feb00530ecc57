"""Storage adapters of the reward service: SQL, with the events in a transactional outbox.

- :class:`SqlRewardRepository` implements :class:`services.reward.service.RewardRepository`
  (see :mod:`services.reward.repository.dao` for why a transition happens exactly once);
- :class:`SqlUnitOfWork` implements :class:`services.reward.service.UnitOfWork`: the
  repository and the events (:class:`services.reward.events.RewardEventWriter` on the
  ``reward_outbox`` table) share its transaction; deadlocks and lock timeouts leave it as
  :class:`kit.sql.WriteConflict` (retried by the service).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import SessionFactory, row_mapper
from kit.sql import SqlUnitOfWork as BaseUnitOfWork
from services.reward.domain import NewReward, Reward, RewardStatus
from services.reward.events import OUTBOX_TOPICS, RewardEventWriter
from services.reward.repository.dao import RewardDAO, RewardOutboxRow, RewardRow

__all__ = ["SqlRewardRepository", "SqlUnitOfWork", "reward_outbox"]

_reward = row_mapper(
    Reward,
    RewardRow,
    renamed={"ctime_ms": "ctime", "utime_ms": "utime"},
    converted={"status": RewardStatus},
)


def reward_outbox() -> Outbox:
    """The outbox of the reward service's events (``reward_outbox``, declared topics only)."""
    return Outbox(RewardOutboxRow, topics=OUTBOX_TOPICS)


class SqlRewardRepository:
    """Rewards in SQL, inside one unit of work's session."""

    def __init__(self, dao: RewardDAO) -> None:
        self._dao = dao

    async def create(self, new: NewReward, *, now_ms: int) -> Reward:
        """Insert an INIT reward."""
        return _reward(await self._dao.create(new, now_ms))

    async def get(self, rid: int) -> Reward | None:
        """Reward ``rid``."""
        row = await self._dao.get(rid)
        return None if row is None else _reward(row)

    async def set_code_url(self, rid: int, code_url: str, *, now_ms: int) -> None:
        """Record the payment's code URL."""
        await self._dao.set_code_url(rid, code_url, now_ms)

    async def leave_init(self, rid: int, status: RewardStatus, *, now_ms: int) -> Reward | None:
        """Move an INIT reward to ``status``; the reward after, or ``None`` if it was not
        INIT (or does not exist)."""
        if not await self._dao.leave_init(rid, status, now_ms):
            return None
        row = await self._dao.get(rid)
        return None if row is None else _reward(row)


class SqlUnitOfWork(BaseUnitOfWork[SqlRewardRepository]):
    """One SQL transaction with a :class:`SqlRewardRepository` and the events bound to it."""

    def __init__(self, sessions: SessionFactory, outbox: Outbox) -> None:
        super().__init__(sessions)
        self._outbox = outbox
        self._events: RewardEventWriter | None = None

    def open_repository(self, session: AsyncSession) -> SqlRewardRepository:
        self._events = RewardEventWriter(self._outbox.bound(session))
        return SqlRewardRepository(RewardDAO(session))

    @property
    def rewards(self) -> SqlRewardRepository:
        """The repository bound to this transaction."""
        return self.repository

    @property
    def events(self) -> RewardEventWriter:
        """``RewardPaid``, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events
