"""Coalescing concurrent calls into batches: many tasks, one round trip per batch.

:class:`Coalescer` turns single-item requests from many tasks into calls of a batch
function. A request that finds a flush slot free is sent at once (on the next turn of the
event loop, together with whatever else was submitted in that turn); while all slots are
busy, requests queue and leave together in the next batch. So an idle system adds no
waiting, and a busy one makes one round trip per batch instead of one per request: the
same "group commit" idea databases use for their log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Runs ``flush(items) -> results`` (one result per item, same order) over batches.

    Args:
        flush: the batch call; if it raises, every item of that batch gets the exception.
        max_batch: the most items per batch.
        max_in_flight: the most batches running at once (e.g. Redis connections used).
    """

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        """Coalesce calls of ``flush``; see the class docstring."""
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        # Counted by hand, not by len(_flushers): a finished flusher stays in the set until
        # its done-callback runs, and a request queued in between would be stranded.
        self._active = 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._active < self._max_in_flight:
            self._active += 1
            task = asyncio.create_task(self._drain())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _drain(self) -> None:
        try:
            await self._drain_pending()
        finally:
            self._active -= 1

    async def _drain_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                # A caller that gave up (cancelled) has no one left to tell.
                if not future.done():
                    future.set_result(result)

    async def aclose(self) -> None:
        """Stop the flushers; requests still queued are cancelled."""
        for task in list(self._flushers):
            task.cancel()
        await asyncio.gather(*self._flushers, return_exceptions=True)
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
