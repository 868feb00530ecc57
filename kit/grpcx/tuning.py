"""The live tunables of a process's gRPC channels: :class:`ClientTuning`.

A model of its own, importing neither :mod:`kit.config` nor :mod:`kit.grpcx.client`, so
that the settings every client process shares (:class:`kit.config.ClientSettings`, its live
``client_tuning`` field) can declare it while :class:`kit.grpcx.client.ServiceClients`,
which reads those settings, applies it (``ServiceClients.tune``/``follow``).
"""

from __future__ import annotations

import dataclasses
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kit.balancer.config import BalancerConfig
from kit.governance.breaker import BreakerConfig


class ClientTuning(BaseModel):
    """The live tunables of a process's gRPC channels (one JSON object in the settings).

    Each field left unset (None) keeps what the process configured at start:

    - ``breaker_k`` / ``breaker_min_requests``: the adaptive breaker's thresholds
      (:class:`kit.governance.BreakerConfig`); lower ``k`` throttles sooner;
    - ``eject_after_failures`` / ``ejection_seconds`` / ``max_ejection_seconds``: when an
      endpoint is ejected and for how long (:class:`kit.balancer.BalancerConfig`);
    - ``endpoint_weights``: service -> endpoint address (``host:port``) -> weight (1-100),
      over the weight the instance registered; an endpoint not named keeps its own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    breaker_k: float | None = Field(default=None, gt=0)
    breaker_min_requests: int | None = Field(default=None, ge=0)
    eject_after_failures: int | None = Field(default=None, ge=1)
    ejection_seconds: float | None = Field(default=None, gt=0)
    max_ejection_seconds: float | None = Field(default=None, gt=0)
    endpoint_weights: dict[str, dict[str, int]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # An unset side is judged at its default (what every process configures today).
        defaults = BalancerConfig()
        first = (
            defaults.ejection_seconds if self.ejection_seconds is None else self.ejection_seconds
        )
        cap = (
            defaults.max_ejection_seconds
            if self.max_ejection_seconds is None
            else self.max_ejection_seconds
        )
        if first > cap:
            raise ValueError(
                f"ejection_seconds ({first:g}) must not exceed max_ejection_seconds ({cap:g})"
            )
        for service, weights in self.endpoint_weights.items():
            for address, weight in weights.items():
                if not 1 <= weight <= 100:
                    raise ValueError(
                        f"endpoint_weights[{service!r}][{address!r}] must be 1-100, got {weight}"
                    )
        return self

    def breaker(self, base: BreakerConfig) -> BreakerConfig:
        """``base`` with the thresholds set here."""
        return dataclasses.replace(
            base,
            k=base.k if self.breaker_k is None else self.breaker_k,
            min_requests=(
                base.min_requests
                if self.breaker_min_requests is None
                else self.breaker_min_requests
            ),
        )

    def balancer(self, base: BalancerConfig) -> BalancerConfig:
        """``base`` with the ejection tunables set here (``ValueError`` if the result has a
        first cool-down longer than its cap)."""
        return dataclasses.replace(
            base,
            eject_after_failures=(
                base.eject_after_failures
                if self.eject_after_failures is None
                else self.eject_after_failures
            ),
            ejection_seconds=(
                base.ejection_seconds if self.ejection_seconds is None else self.ejection_seconds
            ),
            max_ejection_seconds=(
                base.max_ejection_seconds
                if self.max_ejection_seconds is None
                else self.max_ejection_seconds
            ),
        )
