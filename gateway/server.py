"""uvicorn's server with a drain: on SIGTERM, not ready at once, serving for a while, then
uvicorn's own graceful shutdown.

Kubernetes sends SIGTERM when it deletes a pod, at about the time it takes the pod out of
the Service's endpoints; proxies learn that a little later. A process that stopped accepting
at once would refuse the requests still routed to it in between. So :class:`GatewayServer`:

1. on SIGTERM marks the process not ready (:meth:`Readiness.begin_drain`: ``/readyz`` 503,
   answers close their connections) and keeps serving;
2. after ``drain_seconds`` hands the signal to uvicorn's :meth:`uvicorn.Server.handle_exit`,
   whose shutdown stops accepting, lets in-flight requests finish (up to
   ``timeout_graceful_shutdown``), then runs the app's lifespan shutdown.

SIGINT (Ctrl-C), a second signal during the drain, or a signal before the app has started
skip the (rest of the) drain. The signal handler only sets attributes (it interrupts
arbitrary code, and locks are not reentrant); the drain's start and end are logged from
:meth:`on_tick`, which uvicorn's main loop calls every 0.1 s.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn

from gateway.readiness import Readiness

logger = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """A :class:`uvicorn.Server` that drains for ``drain_seconds`` after SIGTERM."""

    def __init__(self, config: uvicorn.Config, readiness: Readiness, drain_seconds: float) -> None:
        super().__init__(config)
        self.readiness = readiness
        self.drain_seconds = drain_seconds
        # The signal being drained and when it arrived (monotonic); None: not draining.
        self._drain_signal: tuple[int, FrameType | None] | None = None
        self._drain_started = 0.0
        self._drain_logged = False
        self._drain_ended = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: start the drain, or pass the signal on to uvicorn."""
        if (
            self._drain_signal is None
            and sig == signal.SIGTERM
            and self.drain_seconds > 0
            and self.readiness.ready
        ):
            self.readiness.begin_drain()
            self._drain_started = time.monotonic()
            self._drain_signal = (sig, frame)
            return
        self.readiness.begin_drain()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick; ends the drain once it has lasted ``drain_seconds``."""
        drained = self._drain_signal
        if drained is not None and not self._drain_ended:
            waited = time.monotonic() - self._drain_started
            if not self._drain_logged:
                self._drain_logged = True
                logger.info(
                    "drain started: not ready, still serving",
                    extra={
                        "signal": signal.Signals(drained[0]).name,
                        "seconds": self.drain_seconds,
                    },
                )
            if self.should_exit:
                self._drain_ended = True
                logger.info(
                    "drain cut short by another signal: shutting down",
                    extra={"drained_seconds": round(waited, 3)},
                )
            elif waited >= self.drain_seconds:
                self._drain_ended = True
                logger.info(
                    "drain ended: shutting down", extra={"drained_seconds": round(waited, 3)}
                )
                super().handle_exit(*drained)
        return await super().on_tick(counter)
