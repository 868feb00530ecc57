"""``GovernanceConfig``: which governance concerns run, and their limits, in one object.

The server composer (:class:`kit.governance.GovernedServerInterceptor`) reads the tracing,
metrics, shedding and rate-limit parts; the client policy
(:class:`kit.governance.UnaryClientPolicy`) the tracing, metrics, deadline and breaker
parts. Every field has a production default, so ``GovernanceConfig()`` is a complete
configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.governance.breaker import BreakerConfig
from kit.governance.deadline import DeadlineConfig
from kit.governance.ratelimit import RateLimitConfig
from kit.governance.shedding import SheddingConfig


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    """Everything the two composers need; every field has a production default.

    - ``deadline``: outgoing timeouts (5 s default, per-method overrides);
    - ``breaker``: SRE adaptive throttling (K=1.5, 10 s window, 20 requests minimum, per service);
    - ``rate_limit``: per-method token buckets (none by default);
    - ``shedding``: at most 512 calls in flight, or 64 while CPU ≥ 0.9 core;
    - ``tracing`` / ``metrics``: whether spans are made and calls counted.
    """

    deadline: DeadlineConfig = field(default_factory=DeadlineConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    shedding: SheddingConfig = field(default_factory=SheddingConfig)
    tracing: bool = True
    metrics: bool = True
