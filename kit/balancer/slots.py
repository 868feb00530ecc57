"""A per-endpoint bound on calls in flight, with a synchronous fast path.

Like ``asyncio.Semaphore``, but taking a free slot needs no ``await`` and a wait is a
plain future that the waiter can abandon at any time (deadline, cancellation) without
leaking a slot handed to it in the meantime.
"""

from __future__ import annotations

import asyncio
from collections import deque


class CallSlots:
    """At most ``limit`` holders at a time; waiters are served first come, first served."""

    __slots__ = ("_drained", "_free", "_limit", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._drained: asyncio.Future[None] | None = None

    @property
    def in_use(self) -> int:
        """Slots currently held."""
        return self._limit - self._free

    def drained(self) -> asyncio.Future[None]:
        """A future resolved once no slot is held (at once if none is)."""
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        if self._free == self._limit:
            self._drained.set_result(None)
        return self._drained

    @property
    def waiting(self) -> int:
        """How many waiters are queued (abandoned ones included until skipped)."""
        return len(self._waiters)

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody queues for it."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    def wait(self) -> asyncio.Future[None]:
        """Queue for a slot: the future resolves when one is handed over.

        The waiter owns the slot once the future is done; pass the future to
        :meth:`abandon` if it gives up, whether or not it was served meanwhile.
        """
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def abandon(self, waiter: asyncio.Future[None]) -> None:
        """Give up a wait: return the slot if it was already handed over."""
        if waiter.done() and not waiter.cancelled():
            self.release()
        else:
            waiter.cancel()

    def release(self) -> None:
        """Return a slot: to the first live waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
        if self._free == self._limit and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
