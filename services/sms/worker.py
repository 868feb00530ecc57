"""The asynchronous delivery worker: delivers queued messages when providers allow.

It runs as a background task of ``python -m services.sms`` (or alone with ``worker``). Each
cycle asks the use case to claim and deliver a batch of due records; when there was nothing
to do, or no provider is usable, it sleeps ``poll_interval_s``. Several instances can run at
once: claims are taken with a conditional update, so each record is delivered by one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.sms.sms_service import SmsService, StoreUnavailable

logger = logging.getLogger(__name__)


class DeliveryWorker:
    """Loops over :meth:`SmsService.deliver_due` until stopped."""

    def __init__(
        self,
        sms: SmsService,
        *,
        poll_interval_s: float,
        batch_size: int,
        concurrency: int,
        gauge_interval_s: float,
    ) -> None:
        self._sms = sms
        self._poll = poll_interval_s
        self._batch = batch_size
        self._concurrency = concurrency
        self._gauge_interval = gauge_interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gauge_at = 0.0

    async def run_once(self) -> int:
        """One cycle: deliver a batch, refresh the queue gauge when due; records handled."""
        handled = await self._sms.deliver_due(self._batch, self._concurrency)
        if time.monotonic() >= self._gauge_at:
            self._gauge_at = time.monotonic() + self._gauge_interval
            await self._sms.refresh_queue_gauge()
        return handled

    async def run(self) -> None:
        """Cycle until :meth:`stop`; errors are logged and the cycle retried after a pause."""
        logger.info("sms delivery worker started")
        while not self._stopping.is_set():
            try:
                handled = await self.run_once()
            except StoreUnavailable:
                logger.warning("sms store unavailable; delivery paused")
                handled = 0
            except Exception:
                logger.exception("sms delivery cycle failed")
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)
        logger.info("sms delivery worker stopped")

    def start(self) -> None:
        """Run the loop as a background task."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name="sms-delivery-worker")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let the current cycle finish (up to ``grace_s``), then end the loop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            # Claims of interrupted sends expire and are delivered by another cycle.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
