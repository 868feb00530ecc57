"""Prometheus metrics of gRPC calls and of the governance concerns.

Exported names:

- ``webook_grpc_server_handled_total{service,method,code}`` and
  ``webook_grpc_server_handling_seconds{service,method}``: every RPC a server finished;
- ``webook_grpc_server_in_flight``: RPCs a server is executing now;
- ``webook_grpc_server_rejected_total{service,method,reason}``: RPCs refused by the rate
  limiter (``reason="ratelimit"``) or the load shedder (``reason="shed"``);
- ``webook_grpc_client_handled_total{service,method,code}`` and
  ``webook_grpc_client_handling_seconds{service,method}``: every outgoing call, as its caller
  saw it (a breaker fallback counts as OK, a local breaker rejection as UNAVAILABLE);
- ``webook_breaker_state{target}`` (1 while the breaker rejects some calls, else 0),
  ``webook_breaker_rejection_probability{target}`` and ``webook_breaker_rejected_total{target}``.

``service`` is the proto service's full name, ``method`` the bare method name, ``code`` the
status code's name (``OK``, ``NOT_FOUND``, ...). Metrics live in a ``GovernanceMetrics`` object
registered once per registry; ``default_metrics()`` is the process-wide one on the default
Prometheus registry, created on first use. The server composer and the client policy record
a call through the :class:`MethodMetrics` of its method and side, which resolves each label
child once: ``labels()`` takes a lock and validates its arguments, which a call need not repeat.
"""

from __future__ import annotations

import functools
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kit.governance._rpc import RpcMethod

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets (seconds): a loopback hop costs about a millisecond here."""


def _call_families(
    side: str, handled_help: str, seconds_help: str, registry: CollectorRegistry | None
) -> tuple[Counter, Histogram]:
    """``webook_grpc_<side>_handled_total`` and ``webook_grpc_<side>_handling_seconds``."""
    handled = Counter(
        f"webook_grpc_{side}_handled_total",
        handled_help,
        ["service", "method", "code"],
        registry=registry,
    )
    seconds = Histogram(
        f"webook_grpc_{side}_handling_seconds",
        seconds_help,
        ["service", "method"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return handled, seconds


class GovernanceMetrics:
    """The metric families the governance concerns update, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        """Create and register the metrics (``registry=None`` registers nowhere, for tests)."""
        self.server_handled, self.server_handling_seconds = _call_families(
            "server",
            "RPCs completed by the server, by final status code.",
            "Time the server spent on an RPC, from handler start to final status.",
            registry,
        )
        self.server_in_flight = Gauge(
            "webook_grpc_server_in_flight",
            "RPCs the server is executing now.",
            registry=registry,
        )
        self.server_rejected = Counter(
            "webook_grpc_server_rejected_total",
            "RPCs the server refused with RESOURCE_EXHAUSTED before running them.",
            ["service", "method", "reason"],
            registry=registry,
        )
        self.client_handled, self.client_handling_seconds = _call_families(
            "client",
            "Outgoing RPCs completed, by final status code as the caller saw it.",
            "Time an outgoing RPC took, as the caller saw it.",
            registry,
        )
        self.breaker_state = Gauge(
            "webook_breaker_state",
            "1 while the client-side breaker rejects some calls to the target, else 0.",
            ["target"],
            registry=registry,
        )
        self.breaker_rejection_probability = Gauge(
            "webook_breaker_rejection_probability",
            "Probability with which the breaker currently rejects a call to the target.",
            ["target"],
            registry=registry,
        )
        self.breaker_rejected = Counter(
            "webook_breaker_rejected_total",
            "Calls the client-side breaker rejected locally.",
            ["target"],
            registry=registry,
        )

        self._server: dict[str, MethodMetrics] = {}
        self._client: dict[str, MethodMetrics] = {}

    def server(self, method: RpcMethod) -> MethodMetrics:
        """What a server records about the calls of ``method`` (one object per method)."""
        return self._recorder(
            self._server, self.server_handled, self.server_handling_seconds, method
        )

    def client(self, method: RpcMethod) -> MethodMetrics:
        """What a client records about its calls of ``method`` (one object per method)."""
        return self._recorder(
            self._client, self.client_handled, self.client_handling_seconds, method
        )

    @staticmethod
    def _recorder(
        recorders: dict[str, MethodMetrics],
        handled: Counter,
        seconds: Histogram,
        method: RpcMethod,
    ) -> MethodMetrics:
        recorder = recorders.get(method.full)
        if recorder is None:
            recorder = recorders[method.full] = MethodMetrics(handled, seconds, method)
        return recorder

    def count_rejected(self, method: RpcMethod, reason: str) -> None:
        """Count one RPC refused by the server (``reason``: ``ratelimit`` or ``shed``)."""
        self.server_rejected.labels(method.service, method.name, reason).inc()


class MethodMetrics:
    """Counts and times the finished calls of one method on one side (server or client)."""

    __slots__ = ("_by_code", "_handled", "_method", "_seconds")

    def __init__(self, handled: Counter, seconds: Histogram, method: RpcMethod) -> None:
        """Record into ``handled`` (by code) and ``seconds``, labelled with ``method``."""
        self._handled = handled
        self._seconds = seconds
        self._method = method
        # Status code -> (handled counter child, handling histogram child).
        self._by_code: dict[grpc.StatusCode, tuple[Any, Any]] = {}

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        """Count one call that ended with ``code`` after ``seconds``."""
        children = self._by_code.get(code)
        if children is None:
            method = self._method
            children = (
                self._handled.labels(method.service, method.name, code.name),
                self._seconds.labels(method.service, method.name),
            )
            self._by_code[code] = children
        children[0].inc()
        children[1].observe(seconds)


@functools.cache
def default_metrics() -> GovernanceMetrics:
    """The process-wide metrics on the default Prometheus registry (created on first use)."""
    return GovernanceMetrics(REGISTRY)
