"""Per-endpoint balancing state: weights and the health state machine.

::

    HEALTHY --(eject_after_failures consecutive failures)--> EJECTED
    EJECTED --(cool-down over; the next pick is a single trial call)--> PROBING
    PROBING --(trial succeeds)--> HEALTHY at weight * probe_weight_ratio
    PROBING --(trial fails)--> EJECTED with twice the cool-down (capped)

A failure also multiplies the effective weight by ``failure_weight_factor`` (floor
``weight * min_weight_ratio``); each success adds ``weight * recovery_step_ratio`` back, up
to the configured weight. The state is driven by the pickers and the channel, all on one
event loop, so it needs no locking.
"""

from __future__ import annotations

import enum

from kit.balancer.config import BalancerConfig
from kit.registry.model import ServiceInstance


class Health(enum.Enum):
    """Where an endpoint stands in outlier detection."""

    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBING = "probing"


class EndpointState:
    """Weights and health of one endpoint (one registered instance)."""

    __slots__ = (
        "_config",
        "consecutive_failures",
        "current_weight",
        "effective_weight",
        "ejected_until",
        "ejections",
        "health",
        "instance",
        "weight",
    )

    def __init__(self, instance: ServiceInstance, config: BalancerConfig) -> None:
        self._config = config
        self.instance = instance
        self.weight = float(instance.weight)
        self.effective_weight = self.weight
        self.current_weight = 0.0
        self.health = Health.HEALTHY
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        self.ejections = 0

    @property
    def key(self) -> str:
        """Stable identity of the endpoint: the instance id."""
        return self.instance.instance_id

    def __repr__(self) -> str:
        return (
            f"EndpointState({self.key!r}, weight={self.weight:g}, "
            f"effective={self.effective_weight:g}, health={self.health.value})"
        )

    def reconfigure(self, config: BalancerConfig) -> None:
        """Judge health by ``config`` from now on (live ejection and weight tunables); the
        current weights and health state stay."""
        self._config = config

    def update_instance(self, instance: ServiceInstance) -> None:
        """Take new registry metadata (e.g. a changed weight) without losing health."""
        ratio = self.effective_weight / self.weight
        self.instance = instance
        self.weight = float(instance.weight)
        self.effective_weight = self.weight * ratio

    def probe_due(self, now: float) -> bool:
        """Whether the endpoint is ejected and its cool-down is over."""
        return self.health is Health.EJECTED and now >= self.ejected_until

    def begin_probe(self) -> None:
        """The next call is the single trial call; no other call is sent meanwhile."""
        self.health = Health.PROBING

    def record_success(self) -> bool:
        """The endpoint answered; returns whether its health changed (probe passed)."""
        self.consecutive_failures = 0
        if self.health is Health.PROBING:
            self.health = Health.HEALTHY
            self.ejections = 0
            self.current_weight = 0.0
            self.effective_weight = self.weight * self._config.probe_weight_ratio
            return True
        if self.effective_weight < self.weight:
            restored = self.effective_weight + self.weight * self._config.recovery_step_ratio
            # Snap to the exact weight: float steps (0.1 + 0.1 ...) fall just short of it,
            # and an almost-full weight would perturb the round-robin order forever.
            self.effective_weight = self.weight if restored > self.weight * 0.999 else restored
        return False

    def record_failure(self, now: float) -> bool:
        """The endpoint failed a call; returns whether this ejected it."""
        config = self._config
        self.consecutive_failures += 1
        self.effective_weight = max(
            self.weight * config.min_weight_ratio,
            self.effective_weight * config.failure_weight_factor,
        )
        if self.health is Health.PROBING or (
            self.health is Health.HEALTHY
            and self.consecutive_failures >= config.eject_after_failures
        ):
            cool_down = min(
                config.max_ejection_seconds, config.ejection_seconds * 2.0**self.ejections
            )
            self.ejections += 1
            self.health = Health.EJECTED
            self.ejected_until = now + cool_down
            return True
        return False

    def record_abandoned(self) -> None:
        """A call ended without a verdict (cancelled by the caller).

        A trial call that was abandoned leaves the endpoint due for another trial.
        """
        if self.health is Health.PROBING:
            self.health = Health.EJECTED
