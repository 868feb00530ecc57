"""A limiter that survives its backend: a :class:`FailurePolicy` decides while Redis is down.

:class:`ResilientLimiter` wraps a remote limiter. When a check raises
:class:`~kit.ratelimit.base.RateLimitBackendError`, that check and every check in the next
``retry_interval`` seconds are decided by the policy without touching the backend; then a
single check probes the backend again while the others keep using the policy. A check of a
:class:`~kit.ratelimit.redis_limiters.RedisLimiter` is a read with a fallback (the policy):
with a client from :func:`kit.redisx.create_redis` it waits for a silent Redis no longer than
the client's ``fallback_wait`` (milliseconds, :func:`kit.redisx.fallback_reads`), and the
client then refuses such reads at once (the probing check included) until Redis answers
again, so no check waits on a frozen Redis for a socket timeout.

- ``fail_open``: admit everything (availability over protection).
- ``fail_closed``: refuse everything, ``retry_after`` = ``retry_interval``.
- ``local``: ask an in-process limiter instead (per-replica limits while Redis is down).

Decisions made under the policy carry ``degraded=True``. The outage is logged once, as a
warning naming the policy, when it starts, and once when the backend answers again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from enum import StrEnum

from redis.exceptions import RedisError

from kit.ratelimit.base import Decision, Limiter, RateLimitBackendError
from kit.ratelimit.redis_limiters import RedisLimiter
from kit.ratelimit.token_bucket import Clock
from kit.redisx import FallbackRead, fallback_reads

logger = logging.getLogger(__name__)


class FailurePolicy(StrEnum):
    """What a limiter answers while its backend is unreachable."""

    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"
    LOCAL = "local"


_POLICY_WORDING = {
    FailurePolicy.FAIL_OPEN: "admitting every request (fail open)",
    FailurePolicy.FAIL_CLOSED: "refusing every request (fail closed)",
    FailurePolicy.LOCAL: "falling back to the in-process limiter",
}


class ResilientLimiter:
    """A :class:`~kit.ratelimit.base.Limiter` applying ``policy`` while ``primary`` fails.

    Args:
        primary: the remote limiter.
        policy: what to answer while it fails.
        fallback: the in-process limiter for ``FailurePolicy.LOCAL`` (required then).
        name: names the limiter in logs (e.g. the rule).
        retry_interval: seconds between attempts to reach a failing backend.
        clock: monotonic seconds (tests drive it by hand).
    """

    def __init__(
        self,
        primary: Limiter,
        *,
        policy: FailurePolicy,
        fallback: Limiter | None = None,
        name: str,
        retry_interval: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        """Wrap ``primary``; see the class docstring."""
        if policy is FailurePolicy.LOCAL and fallback is None:
            raise ValueError("the local policy needs a fallback limiter")
        self.primary = primary
        self.policy = policy
        self.fallback = fallback
        self.name = name
        self._retry_interval = retry_interval
        self._clock = clock
        self._down = False
        self._probing = False
        self._retry_at = 0.0
        self._bounded: FallbackRead | None = (
            fallback_reads(primary.redis) if isinstance(primary, RedisLimiter) else None
        )

    @property
    def backend_down(self) -> bool:
        """Whether the last attempt to reach the backend failed."""
        return self._down

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        """Ask the backend, or the policy while the backend is failing."""
        probe = False
        if self._down:
            if self._probing or self._clock() < self._retry_at:
                return await self._degraded(key, cost)
            probe = self._probing = True
        try:
            check = self.primary.acquire(key, cost)
            decision = await (check if self._bounded is None else self._bounded(check))
        except RateLimitBackendError as exc:
            self._failed(exc)
            return await self._degraded(key, cost)
        except RedisError as exc:  # the bound gave up, or refused to wait
            self._failed(RateLimitBackendError(f"rate limit check in Redis failed: {exc}"))
            return await self._degraded(key, cost)
        finally:
            if probe:
                self._probing = False
        if self._down:
            self._down = False
            logger.info("rate limit backend is back", extra={"limiter": self.name})
        return decision

    def _failed(self, exc: RateLimitBackendError) -> None:
        self._retry_at = self._clock() + self._retry_interval
        if not self._down:
            self._down = True
            logger.warning(
                "rate limit backend unavailable; %s until it answers again",
                _POLICY_WORDING[self.policy],
                extra={"limiter": self.name, "policy": self.policy.value, "error": str(exc)},
            )

    async def _degraded(self, key: str, cost: int) -> Decision:
        if self.policy is FailurePolicy.FAIL_OPEN:
            return Decision(True, 0, 0.0, degraded=True)
        if self.policy is FailurePolicy.FAIL_CLOSED or self.fallback is None:
            return Decision(False, 0, self._retry_interval, degraded=True)
        return dataclasses.replace(await self.fallback.acquire(key, cost), degraded=True)
