"""The client composer: tracing → metrics → deadline → breaker around each unary call.

:class:`UnaryClientPolicy` is the only way client calls are governed. A balanced channel
(:class:`kit.balancer.BalancedChannel`, ``policy=``) hands it each *logical* call and a
function that runs the attempts (with failover); the policy runs the concerns around it as
plain awaits in the calling task, in this order:

- tracing: one CLIENT span per call, its context sent with every attempt;
- metrics: one sample per call, with the status the caller saw (a fallback answer is OK,
  a local rejection UNAVAILABLE);
- deadline: the timeout bounded once (caller's timeout, request deadline, configuration),
  shared by every attempt; a spent budget fails before the breaker, so it is not held
  against the dependency;
- breaker: judges the call's final outcome (a call that failed over and succeeded is an
  accept; client errors never count, :func:`kit.governance.breaker.counts_against`) and
  answers rejected calls with the method's fallback.

Errors, raised before anything is sent: ``DeadlineExceededError`` and ``BreakerOpenError``
(both ``grpc.aio.AioRpcError``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio
from opentelemetry.trace import TracerProvider

from kit.governance._rpc import RpcMethod, parse_method
from kit.governance.breaker import BreakerOpenError, CircuitBreaker, Fallback
from kit.governance.config import GovernanceConfig
from kit.governance.deadline import Deadlines
from kit.governance.metrics import GovernanceMetrics, MethodMetrics, default_metrics
from kit.governance.tracing import Tracing

Metadata = grpc.aio.Metadata | Iterable[tuple[str, str | bytes]] | None
Invoke = Callable[[float | None, Metadata], Awaitable[Any]]
"""Runs the call's attempts with a timeout and metadata; returns the response."""


class _Method:
    """What the policy needs about one method, resolved on its first call."""

    __slots__ = ("metrics", "rpc")

    def __init__(self, rpc: RpcMethod, metrics: MethodMetrics | None) -> None:
        self.rpc = rpc
        self.metrics = metrics


class UnaryClientPolicy:
    """Tracing, metrics, deadline and breaker for the unary calls to one target service.

    Build one per target service and share it among all of that service's endpoints, so
    that the breaker judges the service as a whole.
    """

    def __init__(
        self,
        target_service: str,
        config: GovernanceConfig | None = None,
        *,
        fallbacks: Mapping[str, Fallback] | None = None,
        metrics: GovernanceMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """The policy for calls to ``target_service`` (e.g. ``"user"``), as ``config`` says.

        ``fallbacks`` maps full method names to the answer of a call the breaker rejects;
        ``breaker`` replaces the one ``config.breaker`` describes (e.g. with an injected
        clock).
        """
        config = config or GovernanceConfig()
        self._target = target_service
        self._fallbacks = fallbacks
        self._metrics_given = metrics
        self._tracing = Tracing(tracer_provider) if config.tracing else None
        self._metrics = (metrics or default_metrics()) if config.metrics else None
        self._deadlines = Deadlines(config.deadline)
        if breaker is None and config.breaker.enabled:
            breaker = CircuitBreaker(
                target_service, config.breaker, fallbacks=fallbacks, metrics=metrics
            )
        self.breaker = breaker
        self._methods: dict[str, _Method] = {}

    def reconfigure(self, config: GovernanceConfig) -> None:
        """Take ``config``'s deadline and breaker parts from now on (live settings).

        The breaker is created when switched on, dropped when switched off, and otherwise
        keeps its history (:meth:`CircuitBreaker.reconfigure`). Tracing and metrics stay as
        built.
        """
        self._deadlines = Deadlines(config.deadline)
        if not config.breaker.enabled:
            self.breaker = None
        elif self.breaker is None:
            self.breaker = CircuitBreaker(
                self._target, config.breaker, fallbacks=self._fallbacks, metrics=self._metrics_given
            )
        else:
            self.breaker.reconfigure(config.breaker)

    def _method(self, full_method: str) -> _Method:
        method = self._methods.get(full_method)
        if method is None:
            rpc = parse_method(full_method)
            metrics = self._metrics
            method = _Method(rpc, None if metrics is None else metrics.client(rpc))
            self._methods[full_method] = method
        return method

    async def call(
        self, full_method: str, request: Any, budget: float | None, metadata: Metadata, run: Invoke
    ) -> Any:
        """Run one logical call through ``run``, governed; returns its response.

        ``budget`` is the timeout the caller asked for; ``run`` receives the bounded timeout
        and the metadata with the trace context added.
        """
        method = self._method(full_method)
        rpc = method.rpc
        tracing = self._tracing
        span = None
        if tracing is not None:
            span, metadata = tracing.start_client(rpc, metadata)
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            bounded = self._deadlines.bound(rpc.full, budget)
            breaker = self.breaker
            if breaker is None:
                response = await run(bounded, metadata)
            else:
                admitted = breaker.admit(rpc)
                if isinstance(admitted, BreakerOpenError):
                    response = await breaker.rejected(rpc, admitted, request)
                else:
                    key, throttle = admitted
                    try:
                        response = await run(bounded, metadata)
                    except grpc.aio.AioRpcError as error:
                        breaker.record_error(key, throttle, error)
                        raise
                    breaker.record(key, throttle, accepted=True)
            code = grpc.StatusCode.OK
            return response
        except grpc.aio.AioRpcError as error:
            code = error.code()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException as error:
            if span is not None:
                code = Tracing.client_error_code(span, error)
            raise
        finally:
            if method.metrics is not None:
                method.metrics.observe(code, time.perf_counter() - started)
            if span is not None:
                Tracing.end_client(span, code)
