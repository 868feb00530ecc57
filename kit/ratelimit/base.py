"""What every rate limiter shares: the :class:`Limiter` port, its :class:`Decision`, the
:class:`Quota` it enforces and the error a remote backend raises.

Errors::

    kit.errors.Unavailable
    └── RateLimitBackendError   the limiter's store (Redis) failed; the caller picks a policy
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from kit.errors import Unavailable


class Algorithm(StrEnum):
    """The rate limiting algorithms, each with an in-process and a Redis implementation."""

    TOKEN_BUCKET = "token_bucket"
    """Bursts up to ``burst``, refilled at ``limit / period`` per second."""
    LEAKY_BUCKET = "leaky_bucket"
    """A leaky bucket as a meter (GCRA): the level drains at ``limit / period`` per second
    and may hold ``burst``; admits exactly what a token bucket of the same quota admits,
    with one number of state per key."""
    FIXED_WINDOW = "fixed_window"
    """``limit`` per aligned window of ``period`` seconds (up to 2x at a window edge)."""
    SLIDING_WINDOW = "sliding_window"
    """A log of admitted requests: ``limit`` in any ``period`` seconds, exactly."""
    SLIDING_WINDOW_APPROX = "sliding_window_approx"
    """Two fixed windows weighted by the overlap: ``limit`` per ``period``, approximately,
    with two counters of state per key."""


@dataclass(frozen=True, slots=True)
class Quota:
    """``limit`` units per ``period`` seconds; buckets hold ``burst`` (default ``limit``).

    ``burst`` only matters to the token and leaky buckets.
    """

    limit: int
    period: float
    burst: int | None = None

    def __post_init__(self) -> None:
        """Refuse non-positive or non-finite values."""
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit!r}")
        if not (0 < self.period < math.inf):
            raise ValueError(f"period must be positive and finite, got {self.period!r}")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst!r}")

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.limit / self.period

    @property
    def capacity(self) -> int:
        """The largest burst a bucket admits."""
        return self.limit if self.burst is None else self.burst


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one :meth:`Limiter.acquire`.

    Attributes:
        allowed: whether the units were granted (and consumed).
        remaining: units still available right after this decision (0 when unknown).
        retry_after: seconds until the same request could be admitted; 0 when allowed,
            ``math.inf`` when it never can be (a cost above the quota).
        degraded: True when the limiter's backend failed and the decision came from a
            failure policy (see :class:`~kit.ratelimit.resilient.ResilientLimiter`).
    """

    allowed: bool
    remaining: int
    retry_after: float
    degraded: bool = False


class Limiter(Protocol):
    """Grants units of a quota per key (an IP, a user id, a route...)."""

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` units for ``key`` if the quota allows, all or nothing.

        Raises :class:`RateLimitBackendError` when a remote store cannot answer.
        """
        ...


class RateLimitBackendError(Unavailable):
    """A limiter's remote store (Redis) failed or timed out; nothing is known."""

    def __init__(self, message: str) -> None:
        """Wrap a store failure (raise it ``from`` the original exception)."""
        super().__init__("RATELIMIT_BACKEND_UNAVAILABLE", message)


def check_cost(cost: int) -> None:
    """Refuse negative costs (zero is allowed: it only reads the state)."""
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost!r}")
