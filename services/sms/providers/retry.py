"""Retry decorator: try a send again after exponential backoff with full jitter.

Only errors that a short pause may fix are retried (timeouts, server errors; see
:func:`~services.sms.providers.port.should_backoff_retry`); throttling, our own rate limit and
"every provider is cooling down" are not, so the caller can queue the message at once.
Wrapped around the failover provider, every retry starts at the next provider in turn.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

from services.sms.providers.port import (
    ProviderError,
    ProviderResult,
    SmsProvider,
    should_backoff_retry,
)


class RetryingProvider:
    """Retries ``inner`` up to ``max_retries`` times; the n-th pause is U(0, min(max, base·2ⁿ))."""

    def __init__(
        self,
        inner: SmsProvider,
        *,
        max_retries: int,
        base_delay_s: float,
        max_delay_s: float,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._max_retries = max_retries
        self._base = base_delay_s
        self._max = max_delay_s
        self._rng = rng or random.Random()
        self._sleep = sleep

    def set_policy(self, *, max_retries: int, base_delay_s: float, max_delay_s: float) -> None:
        """Retry as given from the next send on (a live settings change)."""
        self._max_retries = max_retries
        self._base = base_delay_s
        self._max = max_delay_s

    @property
    def name(self) -> str:
        """The wrapped provider's name."""
        return self._inner.name

    def delay(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0-based)."""
        return self._rng.uniform(0, min(self._max, self._base * 2**retry))

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Send through ``inner``, retrying backoff-retryable errors."""
        retry = 0
        while True:
            try:
                return await self._inner.send(tpl_id, args, numbers)
            except ProviderError as exc:
                if retry >= self._max_retries or not should_backoff_retry(exc):
                    raise
            await self._sleep(self.delay(retry))
            retry += 1
