"""Prometheus metrics of client-side balancing.

Module-level collectors (import-time singletons in the default registry):

- ``webook_balancer_picks_total{service,endpoint}``: endpoint picks, failover attempts
  included.
- ``webook_balancer_failovers_total{service,code}``: unary calls retried on another endpoint
  after a failure with ``code``.
- ``webook_balancer_ejections_total{service,endpoint}``: endpoints ejected by outlier
  detection (a failed trial call counts again).
- ``webook_balancer_no_endpoint_total{service}``: calls failed because no endpoint existed.
- ``webook_balancer_endpoint_effective_weight{service,endpoint}``: current effective weight.
- ``webook_balancer_endpoints{service,health}``: known endpoints by health
  (healthy/ejected/probing).

``endpoint`` is the instance address (``host:port``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from kit.balancer.endpoint import Health


class _PickCounts(Collector):
    """``webook_balancer_picks_total``, read at scrape time from plain per-channel counts.

    A pick happens on every call, and a prometheus ``Counter`` takes a lock per increment
    (costing more than the pick itself), so channels count in a dict and this collector
    sums the dicts when scraped.
    """

    name = "webook_balancer_picks"
    documentation = "Endpoint picks by balanced channels, failover attempts included."

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[BalancerMetrics] = weakref.WeakSet()

    def track(self, metrics: BalancerMetrics) -> None:
        """Include ``metrics``' pick counts in scrapes (until it is garbage-collected)."""
        self._sources.add(metrics)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        totals: Tally[tuple[str, str]] = Tally()
        for source in list(self._sources):
            # list() copies the dict in one C call: safe against the event loop thread
            # adding an endpoint while a scrape runs in the exporter's thread.
            for endpoint, count in list(source.pick_counts.items()):
                totals[source.service, endpoint] += count
        family = self._family()
        for (service, endpoint), count in sorted(totals.items()):
            family.add_metric([service, endpoint], count)
        yield family

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=["service", "endpoint"])


PICKS = _PickCounts()
REGISTRY.register(PICKS)

FAILOVERS = Counter(
    "webook_balancer_failovers_total",
    "Unary calls retried on another endpoint after a failure.",
    ["service", "code"],
)
EJECTIONS = Counter(
    "webook_balancer_ejections_total",
    "Endpoints ejected after consecutive failures or a failed trial call.",
    ["service", "endpoint"],
)
NO_ENDPOINT = Counter(
    "webook_balancer_no_endpoint_total",
    "Calls failed because the service had no endpoint.",
    ["service"],
)
EFFECTIVE_WEIGHT = Gauge(
    "webook_balancer_endpoint_effective_weight",
    "Current effective weight of an endpoint (configured weight when healthy).",
    ["service", "endpoint"],
)
ENDPOINTS = Gauge(
    "webook_balancer_endpoints",
    "Endpoints known to balanced channels, by health.",
    ["service", "health"],
)


class BalancerMetrics:
    """The metrics of one balanced channel (one service)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.pick_counts: dict[str, int] = {}
        """Picks per endpoint address; the channel increments it on the hot path."""
        self._no_endpoint = NO_ENDPOINT.labels(service)
        PICKS.track(self)

    def endpoint_added(self, endpoint: str) -> None:
        """Start counting picks of ``endpoint`` (kept after it leaves: it is a counter)."""
        self.pick_counts.setdefault(endpoint, 0)

    def failover(self, code: str) -> None:
        """A unary call is being retried elsewhere after ``code``."""
        FAILOVERS.labels(self.service, code).inc()

    def ejected(self, endpoint: str) -> None:
        """``endpoint`` was ejected."""
        EJECTIONS.labels(self.service, endpoint).inc()

    def no_endpoint(self) -> None:
        """A call failed for lack of endpoints."""
        self._no_endpoint.inc()

    def effective_weight(self, endpoint: str, weight: float) -> None:
        """Publish ``endpoint``'s effective weight."""
        EFFECTIVE_WEIGHT.labels(self.service, endpoint).set(weight)

    def health(self, healths: Iterable[Health]) -> None:
        """Publish how many endpoints are in each health state."""
        tally = Tally(healths)
        for health in Health:
            ENDPOINTS.labels(self.service, health.value).set(tally.get(health, 0))

    def forget(self, endpoint: str) -> None:
        """Drop the per-endpoint gauge of an endpoint that left."""
        with contextlib.suppress(KeyError):
            EFFECTIVE_WEIGHT.remove(self.service, endpoint)

    def forget_service(self) -> None:
        """Drop the per-service gauges (the channel closed)."""
        for health in Health:
            with contextlib.suppress(KeyError):
                ENDPOINTS.remove(self.service, health.value)
