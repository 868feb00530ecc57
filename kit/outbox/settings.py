"""The outbox relay's settings, one mixin for every service that has an outbox.

A service's settings class lists :class:`OutboxRelaySettings` among its bases and gets
``<PREFIX>OUTBOX_POLL_INTERVAL_SECONDS`` and the rest; :func:`kit.grpcx.process.wire_outbox_relay`
reads them. The defaults are the ones ``python -m bench.outbox`` measured
(``docs/performance.md``): 500 rows a round publish about twice as fast as 100 on MariaDB.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class OutboxRelaySettings(BaseModel):
    """The longest pause between two polls of an idle relay (a commit wakes it at once in
    its own process), rows claimed and published per round, how long a claim keeps other
    replicas off a row (a crashed relay's rows wait that long), and how long sent rows are
    kept."""

    outbox_poll_interval_seconds: float = Field(default=0.5, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1, le=5000)
    outbox_lease_seconds: float = Field(default=30.0, gt=10.0)
    outbox_retention_seconds: float = Field(default=86_400.0, ge=0)
