"""The provider port every SMS vendor client and decorator implements, with its errors.

Errors say what the caller may do next, not which vendor said what::

    ProviderError                 retryable  backoff_retry  counts against health
    ├── ProviderTimeout           yes        yes            timeout
    ├── ProviderUnavailable       yes        yes            error
    ├── ProviderThrottled         yes        no             throttled
    ├── ProviderRejected          no         no             no (the message itself is bad)
    ├── ProviderRateLimited       yes        no             no (our own client-side limit)
    ├── NoProviderAvailable       yes        no             no (every provider is unhealthy)
    └── AllProvidersFailed        yes        if any cause is backoff-retryable

``retryable`` means the same message may succeed later (so it is worth queueing);
``backoff_retry`` means it is worth trying again within the same call after a short pause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class ProviderResult:
    """A provider accepted the message.

    ``refused`` lists numbers the provider refused individually while accepting the others,
    as ``(number, vendor code)``; numbers are as passed in and must be masked before logging.
    """

    provider: str
    request_id: str = ""
    refused: tuple[tuple[str, str], ...] = ()


class ProviderError(Exception):
    """A provider did not accept the message."""

    retryable: ClassVar[bool] = True
    backoff_retry: ClassVar[bool] = True

    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail


class ProviderTimeout(ProviderError):
    """No answer within the provider's timeout; the message may or may not have gone out."""


class ProviderUnavailable(ProviderError):
    """A transport failure, a server error or a vendor error that is not about the message."""


class ProviderThrottled(ProviderError):
    """The vendor refused because of its own frequency limits."""

    backoff_retry = False


class ProviderRejected(ProviderError):
    """The vendor refused the message itself; sending it again anywhere will not help."""

    retryable = False
    backoff_retry = False


class ProviderRateLimited(ProviderError):
    """Our client-side limit for this provider is used up; the vendor was not called."""

    backoff_retry = False


class NoProviderAvailable(ProviderError):
    """Every provider is unhealthy (cooling down) or none is configured."""

    backoff_retry = False


class AllProvidersFailed(ProviderError):
    """Every available provider was tried and failed; ``causes`` in the order tried."""

    def __init__(self, causes: Sequence[ProviderError]) -> None:
        super().__init__("failover", "; ".join(str(c) for c in causes))
        self.causes = tuple(causes)

    @property
    def worth_backoff_retry(self) -> bool:
        """Whether any provider failed in a way a short pause may fix."""
        return any(c.backoff_retry for c in self.causes)


def should_backoff_retry(error: ProviderError) -> bool:
    """Whether a retry decorator should try ``error``'s send again after a pause."""
    if isinstance(error, AllProvidersFailed):
        return error.worth_backoff_retry
    return error.backoff_retry


class SmsProvider(Protocol):
    """Sends one templated message to some numbers through one vendor (or a composition)."""

    @property
    def name(self) -> str:
        """Stable name used in metrics, logs and send records."""

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Send; raise a :class:`ProviderError` subclass when the message was not accepted."""
