"""Client-side circuit breaker: Google SRE adaptive throttling, with a degrade hook.

Each client tracks, over a sliding window (10 s by default), how many calls it attempted
(``requests``) and how many the dependency accepted (``accepts``), and rejects a new call
locally with probability::

    max(0, (requests - K * accepts) / (requests + 1))

(SRE book, "Handling Overload"). With K = 1.5 nothing is rejected while at least two calls in
three are accepted; as the dependency fails, local rejections grow smoothly towards 1 but never
reach it, so a trickle of real calls keeps probing and successes pull the probability back to 0
without a half-open state. Locally rejected calls count as requests (the book's definition), so a
dead dependency is probed less and less; their records age out of the window with time.

A breaker measures the callee's health, so "accepted" means the dependency answered, even with
an error about the request: client errors never count, anywhere. They are one explicit set,
:data:`CLIENT_ERROR_CODES` (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
UNAUTHENTICATED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, with OK and CANCELLED), which
:func:`counts_against` and :func:`is_client_error` (for other health judges, such as a
balancer's endpoint ejection) apply, and which ``BreakerConfig.failure_codes`` may not name.
Only server-side codes count against the callee: those in ``failure_codes`` (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN by default). RESOURCE_EXHAUSTED
counts only as an overloaded server's refusal (no status details, as the load shedder
answers): with a ``RetryInfo`` (a rate limiter) or an ``ErrorInfo`` (a business quota) it is
the caller's traffic being refused, an accept. Calls the caller cancelled are not recorded.
Below ``min_requests`` calls in the window the breaker never rejects, so a handful of
failures in a quiet period cannot trip it.

A rejected call returns the method's fallback answer if one was registered, else raises
``BreakerOpenError``, an ``AioRpcError`` with code UNAVAILABLE.

Errors: ``BreakerOpenError`` (subclass of ``grpc.aio.AioRpcError``).
"""

from __future__ import annotations

import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

import grpc
import grpc.aio

from kit.governance._rpc import RpcMethod, parse_method
from kit.governance.metrics import GovernanceMetrics, default_metrics
from kit.ratelimit import Clock

DEFAULT_FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""Status codes that mean the dependency is unhealthy rather than that the request was bad."""

CLIENT_ERROR_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        # Not failures at all: the call succeeded, or the caller gave up on it.
        grpc.StatusCode.OK,
        grpc.StatusCode.CANCELLED,
        # The request is wrong: bad input (a search query the engine cannot read), a value
        # outside the valid range, a state the operation needs but the data is not in.
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        # The data says no: an answer the callee computed correctly.
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        # A concurrency conflict (optimistic lock, transaction abort): the caller retries
        # its whole operation; the callee did its job by detecting it.
        grpc.StatusCode.ABORTED,
        # The caller is not allowed: who it is, or what it may do.
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
"""Outcomes about the request or the caller, never the callee's health: the one rule.

A healthy service answers these to bad or unlucky callers; counting them would let any
client that sends bad input (a hostile search query, a burst of wrong passwords) open a
breaker or eject an endpoint and deny service to everyone else. They never count against a
dependency (:func:`is_client_error`, :func:`counts_against`), whatever ``failure_codes`` a
caller configures. Left out on purpose: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN
and DATA_LOSS (the callee failed), RESOURCE_EXHAUSTED (decided by its details, see
:func:`counts_against`) and UNIMPLEMENTED (a callee built without the method, e.g. mid
rollout: configurable as a failure, not one by default).
"""


def is_client_error(code: grpc.StatusCode) -> bool:
    """Whether ``code`` is about the request or the caller (:data:`CLIENT_ERROR_CODES`):
    such an answer proves the callee healthy and never counts against it, in a breaker or
    in a balancer's endpoint health."""
    return code in CLIENT_ERROR_CODES


_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def counts_against(error: grpc.aio.AioRpcError, failure_codes: frozenset[grpc.StatusCode]) -> bool:
    """Whether a failed call counts against the callee's health.

    A client error (:data:`CLIENT_ERROR_CODES`) never does, even if ``failure_codes`` names
    it. Otherwise its code must be one of ``failure_codes``; a RESOURCE_EXHAUSTED must also
    carry no status details: a rate limiter's answer carries a ``RetryInfo`` and an
    application's quota error an ``ErrorInfo``, and both refuse the caller's traffic, not a
    sick server's.
    """
    code = error.code()
    if is_client_error(code) or code not in failure_codes:
        return False
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        # grpc-stubs type it as the sync API's tuple; grpc.aio gives its Metadata (pairs too).
        trailing = cast("tuple[tuple[str, str | bytes], ...]", error.trailing_metadata() or ())
        return not any(key == _STATUS_DETAILS_KEY for key, _ in trailing)
    return True


Fallback: TypeAlias = Callable[[Any], Awaitable[Any] | Any]
"""Gets the request of a rejected call and returns (or resolves to) the response to use."""

RandomSource: TypeAlias = Callable[[], float]
"""Uniform floats in [0, 1), like ``random.random``."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Adaptive throttling parameters.

    - ``k``: accepts multiplier; 1.5 rejects nothing while at least 2 calls in 3 are accepted,
      lower values throttle sooner;
    - ``window`` seconds of history, kept in ``buckets`` slices;
    - ``min_requests`` in the window before anything is rejected;
    - ``scope``: one breaker per target service (``"service"``) or per method (``"method"``);
    - ``failure_codes``: status codes that count as the dependency failing; never one of
      :data:`CLIENT_ERROR_CODES`.
    """

    enabled: bool = True
    k: float = 1.5
    window: float = 10.0
    buckets: int = 20
    min_requests: int = 20
    scope: Literal["service", "method"] = "service"
    failure_codes: frozenset[grpc.StatusCode] = field(default=DEFAULT_FAILURE_CODES)

    def __post_init__(self) -> None:
        """Validate the parameters."""
        if self.k <= 0:
            raise ValueError(f"k must be positive, got {self.k!r}")
        if not (0 < self.window < math.inf) or self.buckets < 1:
            raise ValueError("window must be positive and finite, buckets at least 1")
        if self.min_requests < 0:
            raise ValueError(f"min_requests must not be negative, got {self.min_requests!r}")
        client_errors = self.failure_codes & CLIENT_ERROR_CODES
        if client_errors:
            names = ", ".join(sorted(code.name for code in client_errors))
            raise ValueError(f"failure_codes must not hold client outcomes: {names}")


class SlidingWindow:
    """Counts requests and accepts over the last ``window`` seconds, in ``buckets`` slices.

    Totals are kept running, so reading them costs O(1) plus clearing slices that expired.
    """

    __slots__ = (
        "_accepts",
        "_clock",
        "_current",
        "_requests",
        "_total_accepts",
        "_total_requests",
        "_width",
    )

    def __init__(self, window: float, buckets: int, *, clock: Clock = time.monotonic) -> None:
        """An empty window of ``window`` seconds split into ``buckets`` slices."""
        self._width = window / buckets
        self._clock = clock
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._total_requests = 0
        self._total_accepts = 0
        self._current = math.floor(clock() / self._width)

    def add(self, *, accepted: bool) -> None:
        """Record one request, accepted by the dependency or not."""
        slot = self._advance() % len(self._requests)
        self._requests[slot] += 1
        self._total_requests += 1
        if accepted:
            self._accepts[slot] += 1
            self._total_accepts += 1

    def totals(self) -> tuple[int, int]:
        """``(requests, accepts)`` within the window."""
        self._advance()
        return self._total_requests, self._total_accepts

    def _advance(self) -> int:
        index = math.floor(self._clock() / self._width)
        if index > self._current:
            size = len(self._requests)
            for step in range(1, min(index - self._current, size) + 1):
                slot = (self._current + step) % size
                self._total_requests -= self._requests[slot]
                self._total_accepts -= self._accepts[slot]
                self._requests[slot] = 0
                self._accepts[slot] = 0
            self._current = index
        return self._current


class AdaptiveThrottle:
    """One breaker: decides locally whether a call may go to its dependency."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        clock: Clock = time.monotonic,
        random_source: RandomSource = random.random,
    ) -> None:
        """A closed breaker with ``config``'s parameters, on ``clock`` and ``random_source``."""
        self._k = config.k
        self._min_requests = config.min_requests
        self._window = SlidingWindow(config.window, config.buckets, clock=clock)
        self._random = random_source

    def reconfigure(self, config: BreakerConfig) -> None:
        """Take ``config``'s ``k`` and ``min_requests``; the window's history stays (a new
        ``window``/``buckets`` needs a new throttle: :meth:`CircuitBreaker.reconfigure`)."""
        self._k = config.k
        self._min_requests = config.min_requests

    def rejection_probability(self) -> float:
        """The probability with which a call is rejected now: 0 when closed."""
        requests, accepts = self._window.totals()
        if requests < self._min_requests:
            return 0.0
        return max(0.0, (requests - self._k * accepts) / (requests + 1))

    def allow(self) -> bool:
        """Whether a call may proceed; a rejected call is recorded as a non-accepted request."""
        probability = self.rejection_probability()
        if probability > 0 and self._random() < probability:
            self._window.add(accepted=False)
            return False
        return True

    def record(self, *, accepted: bool) -> None:
        """Record the outcome of a call that was allowed."""
        self._window.add(accepted=accepted)


class BreakerOpenError(grpc.aio.AioRpcError):
    """The breaker rejected the call locally; no request was sent. Code: UNAVAILABLE."""

    def __init__(self, target: str, method: str, probability: float) -> None:
        """Describe the rejection of a call to ``method`` by ``target``'s breaker."""
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            f"circuit breaker for {target} rejected {method} "
            f"(rejection probability {probability:.2f})",
            None,
        )
        self.target = target
        self.probability = probability


class CircuitBreaker:
    """Adaptive throttling of the calls to one target service, keyed by service or method.

    A call asks :meth:`admit`; an admitted call reports its outcome with :meth:`record` (or
    :meth:`record_error`), a rejected one is answered by :meth:`rejected`. Share one instance
    among all endpoints of the target (the client policy of a balanced channel does), so the
    breaker judges the service as a whole.
    """

    def __init__(
        self,
        target: str,
        config: BreakerConfig | None = None,
        *,
        fallbacks: Mapping[str, Fallback] | None = None,
        metrics: GovernanceMetrics | None = None,
        clock: Clock = time.monotonic,
        random_source: RandomSource = random.random,
    ) -> None:
        """Guard calls to ``target`` (a logical service name such as ``"user"``).

        ``fallbacks`` maps full method names (``/webook.user.v1.UserService/Profile``) to the
        degrade hook used when the breaker rejects a call.
        """
        self._target = target
        self._config = config or BreakerConfig()
        self._fallbacks = dict(fallbacks or {})
        self._metrics = metrics or default_metrics()
        self._clock = clock
        self._random = random_source
        self._throttles: dict[str, AdaptiveThrottle] = {}
        self._gauges: dict[str, tuple[Any, Any]] = {}
        # Key -> the rejection probability last written to its gauges.
        self._published: dict[str, float] = {}

    @property
    def config(self) -> BreakerConfig:
        """The parameters in force."""
        return self._config

    def reconfigure(self, config: BreakerConfig) -> None:
        """Judge by ``config`` from now on (live thresholds).

        A change of ``k`` or ``min_requests`` applies to the breakers in place, keeping
        their history; a change of ``window``, ``buckets`` or ``scope`` starts every breaker
        afresh (closed, empty window). ``enabled`` is the client policy's to apply
        (:meth:`kit.governance.UnaryClientPolicy.reconfigure`).
        """
        old, self._config = self._config, config
        if (old.window, old.buckets, old.scope) != (config.window, config.buckets, config.scope):
            self._throttles.clear()
            self._published.clear()
            return
        for throttle in self._throttles.values():
            throttle.reconfigure(config)

    def key_for(self, full_method: str | bytes) -> str:
        """The breaker key (and ``target`` metric label) governing ``full_method``."""
        if self._config.scope == "method":
            return f"{self._target}{parse_method(full_method).full}"
        return self._target

    def throttle_for(self, full_method: str | bytes) -> AdaptiveThrottle:
        """The breaker governing ``full_method``, created on first use."""
        key = self.key_for(full_method)
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = AdaptiveThrottle(self._config, clock=self._clock, random_source=self._random)
            self._throttles[key] = throttle
        return throttle

    def _publish(self, key: str, throttle: AdaptiveThrottle) -> None:
        gauges = self._gauges.get(key)
        if gauges is None:
            # Label lookups take a lock and build a tuple: resolve them once per key.
            metrics = self._metrics
            gauges = (
                metrics.breaker_state.labels(key),
                metrics.breaker_rejection_probability.labels(key),
            )
            self._gauges[key] = gauges
        probability = throttle.rejection_probability()
        if self._published.get(key) == probability:
            return  # a closed breaker stays at 0: no gauge lock taken per call
        self._published[key] = probability
        gauges[0].set(1.0 if probability > 0 else 0.0)
        gauges[1].set(probability)

    def admit(self, method: RpcMethod) -> tuple[str, AdaptiveThrottle] | BreakerOpenError:
        """Let a call through (its breaker key and throttle) or the error rejecting it."""
        key = self.key_for(method.full)
        throttle = self.throttle_for(method.full)
        if throttle.allow():
            return key, throttle
        self._metrics.breaker_rejected.labels(key).inc()
        self._publish(key, throttle)
        return BreakerOpenError(key, method.full, throttle.rejection_probability())

    def record(self, key: str, throttle: AdaptiveThrottle, *, accepted: bool) -> None:
        """Feed the outcome of an admitted call to its breaker."""
        throttle.record(accepted=accepted)
        self._publish(key, throttle)

    def record_error(
        self, key: str, throttle: AdaptiveThrottle, error: grpc.aio.AioRpcError
    ) -> None:
        """Feed an admitted call's failure to its breaker (a cancelled call is not recorded)."""
        if error.code() is grpc.StatusCode.CANCELLED:
            return
        self.record(key, throttle, accepted=not counts_against(error, self._config.failure_codes))

    async def rejected(self, method: RpcMethod, error: BreakerOpenError, request: Any) -> Any:
        """The answer to a rejected call: its method's fallback, or ``error`` raised."""
        fallback = self._fallbacks.get(method.full)
        if fallback is None:
            raise error
        answer = fallback(request)
        return await answer if inspect.isawaitable(answer) else answer
