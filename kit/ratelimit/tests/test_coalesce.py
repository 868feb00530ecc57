"""Coalescer: batches form under concurrency, bounded; failures and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kit.ratelimit import Coalescer


class SlowDoubler:
    """A batch call that takes a while and records its batches."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.fail = False

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        failing = self.fail
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if failing:
                raise ConnectionError("backend down")
            return [2 * item for item in items]
        finally:
            self.running -= 1


async def test_a_lone_request_goes_at_once() -> None:
    flush = SlowDoubler(delay=0)
    coalescer: Coalescer[int, int] = Coalescer(flush)

    assert await coalescer.submit(21) == 42
    assert flush.batches == [[21]]


async def test_concurrent_requests_share_round_trips_within_bounds() -> None:
    flush = SlowDoubler()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=50, max_in_flight=2)

    results = await asyncio.gather(*(coalescer.submit(n) for n in range(300)))

    assert results == [2 * n for n in range(300)]
    assert sorted(n for batch in flush.batches for n in batch) == list(range(300))
    assert len(flush.batches) <= 8
    assert max(len(batch) for batch in flush.batches) <= 50
    assert flush.most_running <= 2


async def test_a_failed_batch_fails_its_requests_only() -> None:
    flush = SlowDoubler()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_in_flight=1)
    flush.fail = True
    failing = [asyncio.ensure_future(coalescer.submit(n)) for n in range(5)]
    await asyncio.sleep(0.001)  # the first batch leaves
    flush.fail = False

    assert await coalescer.submit(7) == 14
    for future in failing:
        with pytest.raises(ConnectionError):
            await future


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    coalescer: Coalescer[int, int] = Coalescer(SlowDoubler())
    quitter = asyncio.ensure_future(coalescer.submit(1))
    stayer = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)

    quitter.cancel()

    assert await stayer == 4
    assert quitter.cancelled()


async def test_aclose_cancels_what_is_queued() -> None:
    coalescer: Coalescer[int, int] = Coalescer(SlowDoubler(delay=10), max_in_flight=1)
    waiting = [asyncio.ensure_future(coalescer.submit(n)) for n in range(3)]
    await asyncio.sleep(0)

    await coalescer.aclose()

    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(SlowDoubler(), max_batch=0)
