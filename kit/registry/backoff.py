"""Capped exponential backoff with jitter for reconnect loops."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial, initial*multiplier, ...`` capped at ``maximum``, each jittered.

    Jitter spreads reconnects of many processes after a shared outage; a delay is scaled by a
    random factor in ``[1 - jitter, 1]`` so it never exceeds ``maximum``.
    """

    def __init__(
        self, initial: float, maximum: float, multiplier: float = 2.0, jitter: float = 0.2
    ) -> None:
        if initial <= 0 or maximum < initial or multiplier < 1 or not 0 <= jitter < 1:
            raise ValueError("invalid backoff parameters")
        self._initial = initial
        self._maximum = maximum
        self._multiplier = multiplier
        self._jitter = jitter
        self._next = initial

    def next_delay(self) -> float:
        """The delay to wait now; the following one grows."""
        delay = self._next
        self._next = min(self._maximum, self._next * self._multiplier)
        return delay * (1.0 - random.random() * self._jitter)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._next = self._initial
