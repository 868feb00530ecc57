"""Prometheus metrics of the user service.

- ``webook_user_login_throttle_total{result}``: what the per-account login throttle did:
  ``locked`` (wrong passwords locked an account), ``refused`` (a login refused while its
  account is locked, without checking the password) or ``unchecked`` (Redis could not be
  asked; the login went ahead).

The metric objects live in a :class:`UserMetrics` registered once per Prometheus registry;
:func:`default_metrics` is the process-wide one, created on first use.
"""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter


class UserMetrics:
    """The user service's metric objects on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.login_throttle_total = Counter(
            "webook_user_login_throttle_total",
            "Password logins the per-account throttle locked, refused or could not check",
            ["result"],
            registry=registry,
        )


@functools.cache
def default_metrics() -> UserMetrics:
    """The process-wide metrics on the default Prometheus registry."""
    return UserMetrics(REGISTRY)
