"""Server-side rate limiting per method with in-process token buckets.

Each full method gets its own ``kit.ratelimit.TokenBucket`` (``rate`` per second, bursts of
``burst``) from ``RateLimitConfig``: an explicit per-method entry, else the default, else no
limit. A call over its method's limit is answered RESOURCE_EXHAUSTED before its handler runs,
with a ``google.rpc.RetryInfo`` detail saying when a token will be available, and counted in
``webook_grpc_server_rejected_total{reason="ratelimit"}``. Health-check and reflection methods
are never limited (the server composer does not ask). The limit is per process: N replicas
admit N times the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from kit.governance._rpc import RpcMethod, ServicerContext
from kit.governance.metrics import GovernanceMetrics, default_metrics
from kit.ratelimit import Clock, TokenBucket


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` calls per second on average, bursts of up to ``burst`` calls."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        """Validate the limit."""
        if not (0 < self.rate < math.inf) or not (1 <= self.burst < math.inf):
            raise ValueError(f"need 0 < rate and 1 <= burst, both finite: {self!r}")


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Limits by full method name; ``None`` (as default or per method) means unlimited."""

    default: RateLimit | None = None
    per_method: Mapping[str, RateLimit | None] = field(default_factory=dict)

    def limit_for(self, full_method: str) -> RateLimit | None:
        """The limit that applies to ``full_method``."""
        return self.per_method.get(full_method, self.default)

    @property
    def limits_anything(self) -> bool:
        """Whether any method is limited at all."""
        return self.default is not None or any(v is not None for v in self.per_method.values())


class RateLimiter:
    """One token bucket per limited method; a call over the limit is answered by :meth:`refuse`."""

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        metrics: GovernanceMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Limit methods as ``config`` says; ``clock`` drives the buckets."""
        self._config = config
        self._metrics = metrics or default_metrics()
        self._clock = clock
        # None caches "unlimited" so the config is consulted once per method.
        self._buckets: dict[str, TokenBucket | None] = {}

    def bucket_for(self, full_method: str) -> TokenBucket | None:
        """The bucket limiting ``full_method`` (None if unlimited), created on first use."""
        try:
            return self._buckets[full_method]
        except KeyError:
            limit = self._config.limit_for(full_method)
            bucket = (
                None if limit is None else TokenBucket(limit.rate, limit.burst, clock=self._clock)
            )
            self._buckets[full_method] = bucket
            return bucket

    async def refuse(
        self, context: ServicerContext, method: RpcMethod, bucket: TokenBucket
    ) -> None:
        """Count the call as rate limited and abort it with a ``RetryInfo`` (always raises)."""
        self._metrics.count_rejected(method, "ratelimit")
        await abort_rate_limited(context, method, bucket.seconds_until_available())


async def abort_rate_limited(
    context: ServicerContext, method: RpcMethod, retry_after: float
) -> None:
    """Abort the call with RESOURCE_EXHAUSTED and a ``RetryInfo`` of ``retry_after`` seconds."""
    message = f"rate limit exceeded for {method.full}"
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(math.ceil(retry_after * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
