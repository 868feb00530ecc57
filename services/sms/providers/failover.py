"""Failover across providers: round robin over the healthy ones, with health detection.

Each send starts at the next provider in round-robin order and skips providers that are
cooling down (:mod:`services.sms.providers.health`). When a provider fails in a way another
provider may not (timeout, error, throttling, our own rate limit), the send moves on to the
next one; when the message itself was refused it stops at once. Every attempt that reached a
vendor feeds that vendor's health and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import trace

from services.sms.metrics import SmsMetrics
from services.sms.providers.health import HealthPolicy, Outcome, Permit, ProviderHealth, Sample
from services.sms.providers.port import (
    AllProvidersFailed,
    NoProviderAvailable,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderResult,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    SmsProvider,
)

_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class _Member:
    provider: SmsProvider
    health: ProviderHealth


class FailoverProvider:
    """An :class:`~services.sms.providers.port.SmsProvider` over several providers."""

    def __init__(
        self,
        providers: Sequence[SmsProvider],
        policy: HealthPolicy,
        metrics: SmsMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._members = [
            _Member(
                p, ProviderHealth(p.name, policy, clock=clock, listeners=[metrics.health_changed])
            )
            for p in providers
        ]
        for member in self._members:
            metrics.provider_healthy.labels(member.provider.name).set(1)
        self._next = 0

    @property
    def name(self) -> str:
        """``failover``: the concrete provider is in each result."""
        return "failover"

    def health(self, provider: str) -> ProviderHealth:
        """The health state of the named provider."""
        for member in self._members:
            if member.provider.name == provider:
                return member.health
        raise KeyError(provider)

    def could_send(self) -> bool:
        """Whether some provider is healthy or due for a probe."""
        return any(m.health.could_send() for m in self._members)

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Try the providers in round-robin order until one accepts the message."""
        count = len(self._members)
        start = self._next
        self._next = (self._next + 1) % max(count, 1)
        causes: list[ProviderError] = []
        for offset in range(count):
            member = self._members[(start + offset) % count]
            permit = member.health.acquire()
            if permit is None:
                continue
            if causes:
                self._metrics.failover_total.labels(causes[-1].provider).inc()
            try:
                return await self._attempt(member, permit, tpl_id, args, numbers)
            except ProviderRejected:
                raise
            except ProviderError as exc:
                causes.append(exc)
        if not causes:
            raise NoProviderAvailable(self.name, "every provider is cooling down")
        raise AllProvidersFailed(causes)

    async def _attempt(
        self,
        member: _Member,
        permit: Permit,
        tpl_id: str,
        args: Sequence[str],
        numbers: Sequence[str],
    ) -> ProviderResult:
        name = member.provider.name
        with _tracer.start_as_current_span(
            "sms.provider.send",
            attributes={"sms.provider": name, "sms.tpl_id": tpl_id, "sms.numbers": len(numbers)},
        ) as span:
            started = self._clock()
            outcome: Outcome | None = None
            result_label = "error"
            try:
                result = await member.provider.send(tpl_id, args, numbers)
                outcome, result_label = Outcome.OK, "ok"
                return result
            except ProviderRateLimited:
                result_label = "ratelimited"
                raise
            except ProviderRejected:
                outcome, result_label = Outcome.OK, "rejected"
                raise
            except ProviderTimeout:
                outcome, result_label = Outcome.TIMEOUT, "timeout"
                raise
            except ProviderThrottled:
                outcome, result_label = Outcome.THROTTLED, "throttled"
                raise
            except ProviderError:
                outcome = Outcome.ERROR
                raise
            except Exception as exc:
                # A client bug must not escape as an unknown error and stop the failover.
                outcome = Outcome.ERROR
                raise ProviderUnavailable(name, f"unexpected {type(exc).__name__}") from exc
            finally:
                span.set_attribute("sms.result", result_label)
                self._metrics.send_total.labels(name, result_label).inc()
                if outcome is None:
                    member.health.release(permit)
                else:
                    latency = self._clock() - started
                    self._metrics.send_seconds.labels(name).observe(latency)
                    member.health.record(permit, Sample(outcome, latency))
