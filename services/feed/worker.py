"""The fan-out resumer: finishes fan-outs a crash or a follow service outage left unfinished.

It runs as a background task of ``python -m services.feed``, started once the server
serves: one pass at start (what a crashed process left), then one every
``interval_s`` seconds. A pass that races the consumer on the same job is harmless: each
batch commits with the job row locked and only from the cursor it read
(:meth:`services.feed.service.FeedService.fan_out`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.feed.errors import FeedUnavailable
from services.feed.service import FeedService

logger = logging.getLogger(__name__)


class FanoutResumer:
    """Loops over :meth:`FeedService.resume_fanouts` until stopped."""

    def __init__(self, service: FeedService, *, interval_s: float) -> None:
        self._service = service
        self._interval = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Resume passes until :meth:`stop`; a failed pass is logged and tried again later."""
        while not self._stopping.is_set():
            try:
                await self._service.resume_fanouts()
            except FeedUnavailable:
                logger.warning("fan-out resume paused: follow service or database unavailable")
            except Exception:
                logger.exception("fan-out resume pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def start(self) -> None:
        """Run the loop as a background task."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name="feed-fanout-resumer")

    async def stop(self) -> None:
        """End the loop; an interrupted batch is redone by the next process (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
