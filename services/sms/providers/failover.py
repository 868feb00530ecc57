"""Failover across providers: weighted round robin over the healthy ones, with health detection.

Each send's first attempt goes to the provider a smooth weighted round robin picks among
those that could send now (healthy, or due for their probe after a cool-down,
:mod:`services.sms.providers.health`): over ``sum(weights)`` sends each takes ``weight``
first attempts, interleaved. When a provider fails in a way another provider may not
(timeout, error, throttling, our own rate limit), the send moves on to the next one in
configuration order, skipping those cooling down; when the message itself was refused it
stops at once. A provider of weight 0 takes no attempt at all. Every attempt that reached a
vendor feeds that vendor's health and the metrics.

Weights (:meth:`FailoverProvider.set_weights`) and health thresholds
(:meth:`FailoverProvider.set_policy`) change at run time: the sms live settings call them,
and the next send uses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
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

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass
class _Member:
    provider: SmsProvider
    health: ProviderHealth
    weight: int
    # Smooth weighted round robin: the member's running score.
    current: int = 0


class FailoverProvider:
    """An :class:`~services.sms.providers.port.SmsProvider` over several providers."""

    def __init__(
        self,
        providers: Sequence[SmsProvider],
        policy: HealthPolicy,
        metrics: SmsMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        weights: Mapping[str, int] | None = None,
    ) -> None:
        """``weights``: provider name → weight, 1 for those not named (see the module doc)."""
        self._metrics = metrics
        self._clock = clock
        self._members = [
            _Member(
                p,
                ProviderHealth(p.name, policy, clock=clock, listeners=[metrics.health_changed]),
                weight=1,
            )
            for p in providers
        ]
        for member in self._members:
            metrics.provider_healthy.labels(member.provider.name).set(1)
        self.set_weights(weights or {})

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Weigh the providers by ``weights`` (1 for those not named) from the next send on.

        Names of no provider are ignored with a warning. Raises :class:`ValueError` for a
        negative weight or no provider left above 0 (the settings refuse those first).
        """
        names = {member.provider.name for member in self._members}
        unknown = sorted(set(weights) - names)
        if unknown:
            logger.warning("ignoring weights of unknown providers", extra={"unknown": unknown})
        resolved = {name: weights.get(name, 1) for name in names}
        if any(weight < 0 for weight in resolved.values()):
            raise ValueError("a provider weight must be at least 0")
        if not any(resolved.values()):
            raise ValueError("at least one provider must weigh more than 0")
        for member in self._members:
            member.weight = resolved[member.provider.name]
            # A fresh start, so the new shares hold from the first send on.
            member.current = 0
            self._metrics.provider_weight.labels(member.provider.name).set(member.weight)
        logger.info("provider weights set", extra={"weights": resolved})

    @property
    def weights(self) -> dict[str, int]:
        """The weight of each provider in force."""
        return {member.provider.name: member.weight for member in self._members}

    def set_policy(self, policy: HealthPolicy) -> None:
        """Judge every provider's health by ``policy`` from now on
        (:meth:`ProviderHealth.set_policy`)."""
        for member in self._members:
            member.health.set_policy(policy)

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
        """Whether some provider in rotation is healthy or due for a probe."""
        return any(m.weight > 0 and m.health.could_send() for m in self._members)

    def _order(self) -> list[_Member]:
        """The providers one send tries: the weighted pick first, then the others in turn."""
        rotation = [m for m in self._members if m.weight > 0]
        best: _Member | None = None
        total = 0
        for member in rotation:
            if not member.health.could_send():
                continue
            member.current += member.weight
            total += member.weight
            if best is None or member.current > best.current:
                best = member
        if best is None:
            return rotation
        best.current -= total
        start = rotation.index(best)
        return rotation[start:] + rotation[:start]

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Try the providers, the weighted pick first, until one accepts the message."""
        causes: list[ProviderError] = []
        for member in self._order():
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
