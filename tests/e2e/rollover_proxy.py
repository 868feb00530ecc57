"""A TCP load balancer for rollout tests: each new connection to the next ready backend.

It plays the part of an endpoints controller and kube-proxy together: it polls every
backend's readiness path (``/readyz``) every ``poll_interval`` seconds, keeps the backends
that answered 200, and hands each new client connection to the next of them (round robin),
splicing the bytes both ways for as long as the connection lives. Like kube-proxy, it is
blind to HTTP: a kept-alive connection stays on its backend until one side closes it, and
nothing is ever retried. A connection that cannot reach its backend is closed at once (the
client sees a connection error), as is one arriving while no backend is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import httpx

CHUNK = 65536


class ReadinessProxy:
    """The load balancer; ``async with`` it to listen on a free loopback port (:attr:`url`).

    Args:
        poll_interval: seconds between readiness polls; None: no polling, the ready set is
            only what :meth:`pin_ready` says (tests of the proxy itself).
        probe_path: the backends' readiness path.
    """

    def __init__(self, *, poll_interval: float | None = 0.15, probe_path: str = "/readyz"):
        self.poll_interval = poll_interval
        self.probe_path = probe_path
        self.backends: dict[str, int] = {}
        """Port of each backend by name."""
        self.ready: tuple[str, ...] = ()
        """The backends new connections go to, as of the last poll."""
        self.connections: Counter[str] = Counter()
        """Connections handed to each backend."""
        self.answered: Counter[str] = Counter()
        """Connections on which each backend sent at least one byte."""
        self.refused: Counter[str] = Counter()
        """Connections that could not reach their backend (closed, not retried)."""
        self.unrouted = 0
        """Connections that arrived while no backend was ready (closed)."""
        self.port = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._poller: asyncio.Task[None] | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, port: int) -> None:
        """A backend, routed to once it answers its readiness probe."""
        self.backends[name] = port

    def pin_ready(self, names: Iterable[str]) -> None:
        """Route to ``names`` whatever they answer (only without polling)."""
        assert self.poll_interval is None, "the poller would overwrite the pinned set"
        self.ready = tuple(names)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.poll_interval is not None:
            self._poller = asyncio.create_task(self._poll(self.poll_interval))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _poll(self, interval: float) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:

            async def is_ready(port: int) -> bool:
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}{self.probe_path}")
                except httpx.HTTPError:
                    return False
                return answer.status_code == 200

            while True:
                backends = list(self.backends.items())
                results = await asyncio.gather(*(is_ready(port) for _, port in backends))
                self.ready = tuple(
                    name for (name, _), ok in zip(backends, results, strict=True) if ok
                )
                await asyncio.sleep(interval)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(writer)
        try:
            await self._route(reader, writer)
        finally:
            self._open.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ready = self.ready
        if not ready:
            self.unrouted += 1
            return
        name = ready[self._next % len(ready)]
        self._next += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backends[name])
        except OSError:
            self.refused[name] += 1
            return
        self.connections[name] += 1
        self._open.add(up_writer)
        try:
            upstream = asyncio.create_task(self._pipe(reader, up_writer, None))
            downstream = asyncio.create_task(self._pipe(up_reader, writer, name))
            # Whichever side closes first ends the connection on both sides.
            _, pending = await asyncio.wait(
                (upstream, downstream), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._open.discard(up_writer)
            up_writer.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, backend: str | None
    ) -> None:
        """Copy ``source`` to ``sink`` until end of stream or an error; ``backend``: count
        the connection as answered by it at its first byte."""
        first = True
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK):
                if first and backend is not None:
                    self.answered[backend] += 1
                    first = False
                sink.write(data)
                await sink.drain()
