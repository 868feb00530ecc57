"""Replacing a gateway replica under load drops no request.

Two ``python -m gateway`` processes of the e2e stack sit behind
:class:`~tests.e2e.rollover_proxy.ReadinessProxy`, which (like an endpoints controller plus
kube-proxy) hands each new connection to a backend whose ``/readyz`` answered 200 at its
last poll, and never retries. Concurrent clients loop over real API routes (the public
ranking, a logged-in user's tags and profile), half of them on kept-alive connections, half
opening a connection per request, for the whole test. One replica is then replaced as a
rollout does: SIGTERM (its readiness turns false at once and it keeps serving for its
drain, its answers closing their connections), it exits, a new one starts and takes
traffic. Not one request may fail: no connection error, no 5xx, no envelope code 5 (nor
any answer other than HTTP 200 and, for an envelope, code 0).

``test_the_proxy_never_retries`` shows that the proxy does fail requests routed to a
backend that is gone, so the result above is the gateway's doing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import httpx
import pytest

from devstack.catalog import spec
from devstack.infra import ManagedProcess, free_port, start_all
from devstack.suite import gateway_process
from tests.e2e.conftest import USER_AGENT, RunningStack, logged_in
from tests.e2e.rollover_proxy import ReadinessProxy

# A rollout under load: part of make chaos (the root conftest keeps chaos tests out of make test).
pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

DEADLINE_S: Final = 60.0
# Long against the proxy's 0.15 s polls and a request's duration, short for the test.
DRAIN_S: Final = 3.0
WORKERS: Final = 12
# The routes the load sends, in turn: the public ranking, the caller's tags (enveloped),
# the caller's profile (not enveloped).
ROUTES: Final = ("/articles/ranking", "/tags/mine", "/users/profile")


@dataclass
class Load:
    """Clients looping over :data:`ROUTES` through the proxy until :meth:`stop`."""

    base_url: str
    headers: dict[str, str]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int) -> None:
        """Start ``workers`` clients; even ones keep their connection alive."""
        for index in range(workers):
            self._tasks.append(asyncio.create_task(self._worker(index, keep_alive=index % 2 == 0)))

    async def stop(self) -> None:
        """Stop the clients once their current request is answered."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _worker(self, index: int, *, keep_alive: bool) -> None:
        headers = {"User-Agent": USER_AGENT, **self.headers}
        if not keep_alive:
            headers["Connection"] = "close"
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30) as http:
            turn = index
            while not self._stop.is_set():
                route = ROUTES[turn % len(ROUTES)]
                turn += 1
                self.sent += 1
                try:
                    answer = await http.get(route)
                except httpx.TransportError as exc:
                    self.failures.append(f"{route}: {type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{route}: HTTP {answer.status_code}")
                    continue
                body = answer.json()
                if body.get("code", 0) != 0:
                    self.failures.append(f"{route}: code {body['code']}")
                # A breath between requests: the load must not starve the processes.
                await asyncio.sleep(0.005)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (without blocking the loop) until ``condition`` holds; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def in_thread(call: Callable[[], object]) -> Awaitable[object]:
    """Run a blocking process-control call without stopping the load's event loop."""
    return asyncio.to_thread(call)


def address_of(stack: RunningStack, service: str) -> str:
    """The gRPC address of the stack's (first) instance of ``service``."""
    process = stack.services[service][0]
    assert process.env is not None
    return f"127.0.0.1:{process.env[f'{spec(service).env_prefix}GRPC_PORT']}"


@contextmanager
def replicas(stack: RunningStack) -> Iterator[Callable[[str], tuple[ManagedProcess, int]]]:
    """Makes gateway replicas of the stack (draining :data:`DRAIN_S`); kills them after.

    They call the services the load needs at their addresses, without etcd: what is tested
    is the gateway's rollout, and etcd's password logins (bcrypt, one at a time) take
    seconds each on a loaded machine, where a replica would start without its services.
    """
    infra = dataclasses.replace(
        stack.infra,
        overrides={
            **stack.infra.overrides,
            "gateway": {
                "WEBOOK_GATEWAY_ETCD_ENDPOINTS": "[]",
                "WEBOOK_GATEWAY_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_S),
            },
        },
    )
    peers = {service: address_of(stack, service) for service in ("ranking", "tag", "user")}
    made: list[ManagedProcess] = []

    def replica(name: str) -> tuple[ManagedProcess, int]:
        port = free_port()
        process = gateway_process(infra, port, peers, stack.log_dir)
        process.name = f"gateway-{name}"
        process.log_path = stack.log_dir / f"gateway-rollover-{name}.log"
        made.append(process)
        return process, port

    try:
        yield replica
    finally:
        # No drain to wait for at teardown: SIGKILL.
        for process in made:
            process.kill()


async def test_replacing_a_replica_under_load_drops_no_request(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    user = await logged_in(client, "rollover")
    with replicas(stack) as replica:
        (old, old_port), (kept, kept_port) = replica("old"), replica("kept")
        await in_thread(lambda: start_all([old, kept], timeout=DEADLINE_S))
        async with ReadinessProxy() as proxy:
            proxy.add("old", old_port)
            proxy.add("kept", kept_port)
            await until(lambda: set(proxy.ready) == {"old", "kept"}, "both replicas ready")
            load = Load(proxy.url, user.headers)
            load.start(WORKERS)
            try:
                await until(
                    lambda: proxy.answered["old"] >= 10 and proxy.answered["kept"] >= 10,
                    "traffic on both replicas",
                )
                assert load.failures == [], "failures before the rollout"

                old.terminate()
                await until(lambda: "old" not in proxy.ready, "the old replica to turn not ready")
                await until(lambda: not old.alive(), "the old replica to exit")
                # It stopped on its own, through uvicorn's shutdown (which re-raises the
                # SIGTERM it handled), not by a SIGKILL.
                assert old.process is not None
                assert old.process.returncode == -signal.SIGTERM

                new, new_port = replica("new")
                await in_thread(lambda: new.start(timeout=DEADLINE_S))
                proxy.add("new", new_port)
                await until(lambda: proxy.answered["new"] >= 20, "traffic on the new replica")
                sent = load.sent
                await until(
                    lambda: load.sent >= max(sent + 100, 500), "hundreds of requests in all"
                )
            finally:
                await load.stop()

    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed"
    assert load.sent >= 500
    assert proxy.answered["old"] > 0
    assert proxy.answered["new"] > 0
    assert proxy.refused == {}
    assert proxy.unrouted == 0


async def test_the_proxy_never_retries() -> None:
    async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    live = await asyncio.start_server(answer_ok, "127.0.0.1", 0)
    try:
        async with ReadinessProxy(poll_interval=None) as proxy:
            proxy.add("live", live.sockets[0].getsockname()[1])
            proxy.add("gone", free_port())  # nothing listens there
            proxy.pin_ready(["live", "gone"])
            outcomes = []
            async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
                for _ in range(4):
                    try:
                        outcomes.append((await http.get("/")).text)
                    except httpx.TransportError:
                        outcomes.append("failed")
    finally:
        live.close()
        await live.wait_closed()

    # Round robin over both: every request sent to the gone backend failed, none was
    # moved to the live one.
    assert outcomes == ["ok", "failed", "ok", "failed"]
    assert proxy.refused == {"gone": 2}
