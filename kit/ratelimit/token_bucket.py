"""A token bucket: ``rate`` tokens per second refill a bucket holding at most ``capacity``.

A request costing ``cost`` tokens is admitted when the bucket holds at least that many, so the
bucket allows bursts of up to ``capacity`` and a sustained ``rate`` per second. The bucket starts
full. Refill is computed lazily from a monotonic clock on each check (no background task), which
makes a check a few arithmetic operations; inject ``clock`` to drive time by hand in tests.

Not thread-safe: it is meant for one asyncio event loop, where checks never interleave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeAlias

Clock: TypeAlias = Callable[[], float]
"""A monotonic clock in seconds, like ``time.monotonic``."""

# Refill arithmetic on float clock readings loses a few ulps; without this slack, waiting exactly
# ``seconds_until_available()`` could leave the bucket a hair short of the token it promised.
_EPSILON = 1e-9


class TokenBucket:
    """Admits ``rate`` units per second on average, with bursts of up to ``capacity``."""

    __slots__ = ("_capacity", "_clock", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, capacity: float, *, clock: Clock = time.monotonic) -> None:
        """Create a full bucket refilling ``rate`` tokens per second, holding at most ``capacity``.

        Raises ``ValueError`` unless both are positive and finite.
        """
        if not (0 < rate < math.inf):
            raise ValueError(f"rate must be positive and finite, got {rate!r}")
        if not (0 < capacity < math.inf):
            raise ValueError(f"capacity must be positive and finite, got {capacity!r}")
        self._rate = float(rate)
        self._capacity = float(capacity)
        self._clock = clock
        self._tokens = self._capacity
        self._updated = clock()

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (the largest burst)."""
        return self._capacity

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` tokens if available and return True; otherwise take nothing, False.

        A ``cost`` larger than ``capacity`` can never be admitted and always returns False.
        """
        if cost < 0:
            raise ValueError(f"cost must not be negative, got {cost!r}")
        self._refill()
        if self._tokens + _EPSILON >= cost:
            self._tokens = max(0.0, self._tokens - cost)
            return True
        return False

    def seconds_until_available(self, cost: float = 1) -> float:
        """Seconds until ``cost`` tokens will be available (0 if they are now).

        This is the value for a ``Retry-After`` hint after ``try_acquire`` failed; it is
        ``math.inf`` when ``cost`` exceeds ``capacity``.
        """
        if cost < 0:
            raise ValueError(f"cost must not be negative, got {cost!r}")
        if cost > self._capacity:
            return math.inf
        self._refill()
        missing = cost - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self._rate

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        # A clock that goes backwards (only possible with an injected one) must not drain tokens.
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._updated = now

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self._rate}, capacity={self._capacity}, tokens={self.tokens:.3f})"
        )
