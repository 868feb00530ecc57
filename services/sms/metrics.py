"""Prometheus metrics of the sms service.

- ``webook_sms_send_total{provider,result}``: every attempt through a provider; ``result`` is
  ``ok``, ``timeout``, ``error``, ``throttled``, ``rejected`` or ``ratelimited`` (our own
  limiter stopped it before the vendor was called);
- ``webook_sms_send_seconds{provider}``: duration of attempts that reached the vendor;
- ``webook_sms_provider_healthy{provider}``: 1 while the provider takes traffic, else 0;
- ``webook_sms_failover_total{from_provider}``: a send left ``from_provider`` for the next one;
- ``webook_sms_provider_weight{provider}``: the provider's weight in force (live settings);
- ``webook_sms_async_queue{status}``: stored records ``waiting`` or ``sending`` right now;
- ``webook_sms_async_oldest_seconds``: age of the oldest record ``waiting`` or ``sending``
  (0 when none is): a queue that stopped moving grows it;
- ``webook_sms_async_total{result}``: what happened to messages off the synchronous path
  (``queued``, ``delivered``, ``retry``, ``failed``, ``expired``);
- ``webook_sms_daily_limit_total{result}``: messages (one per number) checked against the
  global daily limit: ``ok``, ``refused`` (limit reached) or ``unchecked`` (counter down),
  and ``returned``: counted, then not sent (a repeated idempotency key, the store down);
- ``webook_sms_daily_used``: messages counted today, as last seen by this instance;
- ``webook_code_send_total{biz,result}``: ``ok``, ``too_frequent``, ``send_failed``, ``error``;
- ``webook_code_verify_total{biz,result}``: ``ok``, ``wrong``, ``too_many``, ``error``.

The metric objects live in an :class:`SmsMetrics` registered once per Prometheus registry;
:func:`default_metrics` is the process-wide one, created on first use.
"""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class SmsMetrics:
    """The sms service's metric objects on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.send_total = Counter(
            "webook_sms_send_total",
            "SMS send attempts per provider and result",
            ["provider", "result"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "webook_sms_send_seconds",
            "Duration of SMS send attempts that reached the provider",
            ["provider"],
            buckets=SEND_BUCKETS,
            registry=registry,
        )
        self.provider_healthy = Gauge(
            "webook_sms_provider_healthy",
            "1 while the provider takes traffic, 0 while it cools down",
            ["provider"],
            registry=registry,
        )
        self.provider_weight = Gauge(
            "webook_sms_provider_weight",
            "Weight of the provider in the choice of first attempts (0: out of rotation)",
            ["provider"],
            registry=registry,
        )
        self.failover_total = Counter(
            "webook_sms_failover_total",
            "Sends that moved on from a failed provider",
            ["from_provider"],
            registry=registry,
        )
        self.async_queue = Gauge(
            "webook_sms_async_queue",
            "Stored SMS records waiting for or in asynchronous delivery",
            ["status"],
            registry=registry,
        )
        self.async_oldest_seconds = Gauge(
            "webook_sms_async_oldest_seconds",
            "Age of the oldest stored SMS record waiting for or in asynchronous delivery",
            registry=registry,
        )
        self.async_total = Counter(
            "webook_sms_async_total",
            "Messages handled off the synchronous path, by result",
            ["result"],
            registry=registry,
        )
        self.daily_limit_total = Counter(
            "webook_sms_daily_limit_total",
            "SMS messages checked against the global daily limit, by result",
            ["result"],
            registry=registry,
        )
        self.daily_used = Gauge(
            "webook_sms_daily_used",
            "SMS messages counted against today's (UTC) limit, as last seen by this instance",
            registry=registry,
        )
        self.code_send_total = Counter(
            "webook_code_send_total",
            "Verification code sends by business and result",
            ["biz", "result"],
            registry=registry,
        )
        self.code_verify_total = Counter(
            "webook_code_verify_total",
            "Verification code checks by business and result",
            ["biz", "result"],
            registry=registry,
        )

    def health_changed(self, provider: str, healthy: bool, _reason: str) -> None:
        """A :data:`~services.sms.providers.health.HealthListener` updating the gauge."""
        self.provider_healthy.labels(provider).set(1 if healthy else 0)


@functools.cache
def default_metrics() -> SmsMetrics:
    """The process-wide metrics on the default Prometheus registry."""
    return SmsMetrics(REGISTRY)
