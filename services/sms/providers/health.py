"""Health of one provider, judged from the outcomes of its recent sends.

Each :class:`Detector` looks at one symptom and names it when it sees it:

- :class:`ConsecutiveTimeouts`: the last N sends all timed out;
- :class:`LatencyRise`: the average latency of the last ``recent`` successful sends is more
  than ``rise`` (e.g. 20 %) above the average of the ``baseline`` sends before them;
- :class:`LongTail`: more than ``ratio`` (e.g. 10 %) of the last sends took longer than
  ``threshold_s`` (e.g. 1 s); timeouts count as slow;
- :class:`ErrorRate`: more than ``ratio`` of the last sends failed (errors and timeouts);
- :class:`ConsecutiveThrottles`: the vendor throttled the last N sends.

:class:`ProviderHealth` is the provider's state machine: *healthy* until a detector fires,
then *unhealthy* (skipped) for ``cooldown_s``; after that exactly one send is let through as
a probe: its success makes the provider healthy again with fresh detectors, its failure
starts another cool-down. Sends refused by the message itself count as successes (the
provider answered), and sends our own rate limiter stopped are not observed at all.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How one send through a provider ended, as far as its health is concerned."""

    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class Sample:
    """One observed send."""

    outcome: Outcome
    latency_s: float


class Detector(Protocol):
    """Watches one symptom over a provider's recent samples."""

    def observe(self, sample: Sample) -> str | None:
        """Record ``sample``; return why the provider looks unhealthy, or ``None``."""

    def reset(self) -> None:
        """Forget everything (after a cool-down and a successful probe)."""


class ConsecutiveTimeouts:
    """Fires after ``limit`` timeouts in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._run = 0

    def observe(self, sample: Sample) -> str | None:
        """Count the current run of timeouts."""
        self._run = self._run + 1 if sample.outcome is Outcome.TIMEOUT else 0
        if self._run >= self.limit:
            return f"{self._run} consecutive timeouts"
        return None

    def reset(self) -> None:
        """Start a new run."""
        self._run = 0


class ConsecutiveThrottles:
    """Fires after ``limit`` throttled answers in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._run = 0

    def observe(self, sample: Sample) -> str | None:
        """Count the current run of throttled answers."""
        self._run = self._run + 1 if sample.outcome is Outcome.THROTTLED else 0
        if self._run >= self.limit:
            return f"throttled {self._run} times in a row"
        return None

    def reset(self) -> None:
        """Start a new run."""
        self._run = 0


class LatencyRise:
    """Fires when recent successful sends got slower than the baseline by a share.

    ``floor_s`` ignores rises smaller than that in absolute terms, so that a fast provider
    going from 5 ms to 7 ms is not called unhealthy.
    """

    def __init__(self, baseline: int, recent: int, rise: float, floor_s: float = 0.0) -> None:
        self.baseline = baseline
        self.recent = recent
        self.rise = rise
        self.floor_s = floor_s
        self._latencies: deque[float] = deque(maxlen=baseline + recent)

    def observe(self, sample: Sample) -> str | None:
        """Compare the recent average with the baseline average once both windows are full."""
        if sample.outcome is not Outcome.OK:
            return None
        self._latencies.append(sample.latency_s)
        if len(self._latencies) < self.baseline + self.recent:
            return None
        values = list(self._latencies)
        base = sum(values[: self.baseline]) / self.baseline
        now = sum(values[self.baseline :]) / self.recent
        if now > base * (1 + self.rise) and now - base > self.floor_s:
            return f"average latency rose from {base * 1000:.0f} ms to {now * 1000:.0f} ms"
        return None

    def reset(self) -> None:
        """Drop the windows; a new baseline is measured."""
        self._latencies.clear()


class LongTail:
    """Fires when more than ``ratio`` of the last ``window`` sends were slower than a threshold."""

    def __init__(self, threshold_s: float, ratio: float, window: int, min_samples: int) -> None:
        self.threshold_s = threshold_s
        self.ratio = ratio
        self.min_samples = min_samples
        self._slow: deque[bool] = deque(maxlen=window)

    def observe(self, sample: Sample) -> str | None:
        """Track which recent sends were slow."""
        if sample.outcome not in (Outcome.OK, Outcome.TIMEOUT):
            return None
        self._slow.append(sample.outcome is Outcome.TIMEOUT or sample.latency_s > self.threshold_s)
        if len(self._slow) < self.min_samples:
            return None
        share = sum(self._slow) / len(self._slow)
        if share > self.ratio:
            return f"{share:.0%} of sends slower than {self.threshold_s:g}s"
        return None

    def reset(self) -> None:
        """Drop the window."""
        self._slow.clear()


class ErrorRate:
    """Fires when more than ``ratio`` of the last ``window`` sends failed."""

    def __init__(self, ratio: float, window: int, min_samples: int) -> None:
        self.ratio = ratio
        self.min_samples = min_samples
        self._failed: deque[bool] = deque(maxlen=window)

    def observe(self, sample: Sample) -> str | None:
        """Track which recent sends failed (throttling has its own detector)."""
        if sample.outcome is Outcome.THROTTLED:
            return None
        self._failed.append(sample.outcome in (Outcome.ERROR, Outcome.TIMEOUT))
        if len(self._failed) < self.min_samples:
            return None
        share = sum(self._failed) / len(self._failed)
        if share > self.ratio:
            return f"{share:.0%} of sends failed"
        return None

    def reset(self) -> None:
        """Drop the window."""
        self._failed.clear()


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds of the detectors; a zero limit or ratio disables that detector."""

    consecutive_timeouts: int = 3
    consecutive_throttles: int = 3
    latency_baseline: int = 50
    latency_recent: int = 10
    latency_rise: float = 0.2
    latency_floor_s: float = 0.05
    long_tail_threshold_s: float = 1.0
    long_tail_ratio: float = 0.1
    long_tail_window: int = 50
    error_rate: float = 0.5
    error_window: int = 20
    min_samples: int = 10
    cooldown_s: float = 30.0

    def detectors(self) -> list[Detector]:
        """Fresh detectors for one provider."""
        found: list[Detector] = []
        if self.consecutive_timeouts > 0:
            found.append(ConsecutiveTimeouts(self.consecutive_timeouts))
        if self.consecutive_throttles > 0:
            found.append(ConsecutiveThrottles(self.consecutive_throttles))
        if self.latency_rise > 0 and self.latency_baseline > 0 and self.latency_recent > 0:
            found.append(
                LatencyRise(
                    self.latency_baseline,
                    self.latency_recent,
                    self.latency_rise,
                    self.latency_floor_s,
                )
            )
        if self.long_tail_ratio > 0 and self.long_tail_window > 0:
            found.append(
                LongTail(
                    self.long_tail_threshold_s,
                    self.long_tail_ratio,
                    self.long_tail_window,
                    min(self.min_samples, self.long_tail_window),
                )
            )
        if self.error_rate > 0 and self.error_window > 0:
            found.append(
                ErrorRate(
                    self.error_rate, self.error_window, min(self.min_samples, self.error_window)
                )
            )
        return found


@dataclass(frozen=True)
class Permit:
    """Leave to send through a provider; ``probe`` marks the single send after a cool-down."""

    probe: bool


class HealthState(StrEnum):
    """Where a provider is in its health cycle."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    PROBING = "probing"


HealthListener = Callable[[str, bool, str], None]
"""Called with ``(provider, healthy, reason)`` whenever a provider changes health."""


class ProviderHealth:
    """Health state machine of one provider (see the module docstring)."""

    def __init__(
        self,
        provider: str,
        policy: HealthPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        listeners: Sequence[HealthListener] = (),
    ) -> None:
        self.provider = provider
        self.policy = policy
        self._clock = clock
        self._listeners = list(listeners)
        self._detectors = policy.detectors()
        self.state = HealthState.HEALTHY
        self.reason = ""
        self._until = 0.0

    def set_policy(self, policy: HealthPolicy) -> None:
        """Judge by ``policy`` from now on (a live settings change).

        The detectors start afresh, since their windows may have new sizes; the state stays:
        a cool-down under way keeps its end, and the next one lasts the new ``cooldown_s``.
        """
        if policy == self.policy:
            return
        self.policy = policy
        self._detectors = policy.detectors()

    @property
    def healthy(self) -> bool:
        """Whether the provider takes ordinary traffic."""
        return self.state is HealthState.HEALTHY

    def could_send(self) -> bool:
        """Whether a send could go through now (healthy, or a probe is due); no side effects."""
        if self.state is HealthState.HEALTHY:
            return True
        return self.state is HealthState.UNHEALTHY and self._clock() >= self._until

    def acquire(self) -> Permit | None:
        """A permit to use the provider, or ``None`` while it cools down or is being probed.

        After a cool-down the first caller gets the probe permit; others keep skipping the
        provider until the probe's verdict.
        """
        if self.state is HealthState.HEALTHY:
            return Permit(probe=False)
        if self.state is HealthState.UNHEALTHY and self._clock() >= self._until:
            self.state = HealthState.PROBING
            logger.info("probing provider after cool-down", extra={"provider": self.provider})
            return Permit(probe=True)
        return None

    def release(self, permit: Permit) -> None:
        """The send behind ``permit`` never reached the provider: no verdict."""
        if permit.probe and self.state is HealthState.PROBING:
            self.state = HealthState.UNHEALTHY

    def record(self, permit: Permit, sample: Sample) -> None:
        """Feed the outcome of a send the provider answered (or timed out on)."""
        if permit.probe:
            if self.state is not HealthState.PROBING:
                return
            if sample.outcome is Outcome.OK:
                for detector in self._detectors:
                    detector.reset()
                self._set(HealthState.HEALTHY, "probe succeeded")
            else:
                self._cool_down(f"probe failed: {sample.outcome.value}")
            return
        if self.state is not HealthState.HEALTHY:
            return
        reasons = [r for d in self._detectors if (r := d.observe(sample)) is not None]
        if reasons:
            self._cool_down("; ".join(reasons))

    def _cool_down(self, reason: str) -> None:
        self._until = self._clock() + self.policy.cooldown_s
        self._set(HealthState.UNHEALTHY, reason)

    def _set(self, state: HealthState, reason: str) -> None:
        was_healthy = self.healthy
        self.state = state
        self.reason = reason
        if was_healthy != self.healthy:
            log = logger.info if self.healthy else logger.warning
            log(
                "provider healthy" if self.healthy else "provider unhealthy",
                extra={"provider": self.provider, "reason": reason},
            )
            for listener in self._listeners:
                listener(self.provider, self.healthy, reason)
