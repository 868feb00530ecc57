"""Whether this gateway process should get new requests: its readiness, apart from liveness.

``/healthz`` (liveness) answers while the event loop does; ``/readyz`` (readiness) answers
200 only while :attr:`Readiness.ready`: the app's lifespan has finished starting (every
client open) and the process is not draining. It does not follow the backends' health: a
shared dependency down would take every replica out of the load balancer at once, where
answering code 5 (counted by ``webook_http_envelope_codes_total``) is the honest answer.

Draining (docs/gateway.md, Rollouts): on SIGTERM the process turns not ready at once and
keeps serving for ``shutdown_drain_seconds`` (:class:`gateway.server.GatewayServer`), so a
load balancer that follows ``/readyz`` stops sending before the process stops accepting.
While draining, every answer carries ``Connection: close``
(:class:`~gateway.middleware.gateway_layer.GatewayLayer`): a client on a kept-alive
connection reconnects, through the load balancer, to a replica that stays.

Gauges: ``webook_gateway_ready`` and ``webook_gateway_draining`` (0 or 1), read from the
process's latest :class:`Readiness` when scraped.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Gauge

READY = Gauge("webook_gateway_ready", "1 while the gateway wants new requests (/readyz 200).")
DRAINING = Gauge(
    "webook_gateway_draining", "1 from SIGTERM until the server stops: serving, not ready."
)

State = Literal["starting", "ready", "draining", "stopped"]


class Readiness:
    """The process's readiness: started (lifespan up) and not draining.

    Plain attributes only: :meth:`begin_drain` runs inside a signal handler, where taking a
    lock (a metric's, the logging module's) could deadlock against the interrupted code.
    """

    __slots__ = ("draining", "started", "stopped")

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.draining = False
        READY.set_function(lambda: 1.0 if self.ready else 0.0)
        DRAINING.set_function(lambda: 1.0 if self.draining else 0.0)

    @property
    def ready(self) -> bool:
        """Whether the process wants new requests."""
        return self.started and not self.draining and not self.stopped

    @property
    def state(self) -> State:
        """Why it is (not) ready, for ``/readyz``'s body."""
        if self.stopped:
            return "stopped"
        if self.draining:
            return "draining"
        return "ready" if self.started else "starting"

    def mark_started(self) -> None:
        """The lifespan has started everything: requests can be served."""
        self.started = True

    def mark_stopped(self) -> None:
        """The lifespan is shutting down: clients are about to close."""
        self.stopped = True

    def begin_drain(self) -> None:
        """Turn not ready and keep serving (signal-safe: one attribute set)."""
        self.draining = True
