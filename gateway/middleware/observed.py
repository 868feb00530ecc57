"""What observing middleware (access log, metrics) needs to know of a response."""

from __future__ import annotations

import time

from starlette.types import Message, Send


class ObservedResponse:
    """A ``send`` wrapper that remembers the status and when the request started.

    The status stays 500 if the app raises before answering (the server then answers 500).
    """

    __slots__ = ("_send", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = time.perf_counter()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)

    @property
    def elapsed(self) -> float:
        """Seconds since the request started."""
        return time.perf_counter() - self.started
