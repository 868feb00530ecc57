"""``python -m gateway`` on SIGTERM: not ready at once, still serving, then a clean stop.

The gateway runs as a real process (uvicorn's signal handling is what is tested), over the
test Redis, with the services' addresses pointing at ports nothing listens on: no request
here reaches a service.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.infra import ManagedProcess, free_port

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
# Longer than any test waits: only a second signal ends this drain.
LONG_DRAIN_S = 300.0


def gateway(redis_url: str, log_dir: Path, drain_seconds: float) -> tuple[ManagedProcess, str]:
    """A gateway process (not started) with the given drain; and its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "WEBOOK_GATEWAY_MODE": "test",
            "WEBOOK_GATEWAY_PORT": str(port),
            "WEBOOK_GATEWAY_REDIS_URL": redis_url,
            "WEBOOK_GATEWAY_PEERS": json.dumps({"user": f"127.0.0.1:{free_port()}"}),
            "WEBOOK_GATEWAY_SHUTDOWN_DRAIN_SECONDS": str(drain_seconds),
            "WEBOOK_GATEWAY_SHUTDOWN_GRACE": "5",
        }
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    process = ManagedProcess(
        name="gateway-drain",
        argv=[sys.executable, "-m", "gateway"],
        log_path=log_dir / "gateway.log",
        ready=ready,
        env=env,
    )
    return process, base


@pytest.fixture
def started(
    redis_url: str, tmp_path: Path
) -> Iterator[Callable[[float], tuple[ManagedProcess, str]]]:
    """Starts gateways with a given drain; stops whatever is left after the test."""
    processes: list[ManagedProcess] = []

    def start(drain_seconds: float) -> tuple[ManagedProcess, str]:
        process, base = gateway(redis_url, tmp_path, drain_seconds)
        processes.append(process)
        process.start(timeout=DEADLINE_S)
        return process, base

    yield start
    for process in processes:
        process.kill()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail after :data:`DEADLINE_S`."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def exited(process: ManagedProcess) -> Callable[[], bool]:
    """Whether ``process`` has exited."""
    return lambda: not process.alive()


def log_messages(process: ManagedProcess) -> list[str]:
    """The ``msg`` of every JSON line of the process's log, in order."""
    messages = []
    for line in process.log_path.read_text().splitlines():
        if line.startswith("{"):
            messages.append(str(json.loads(line).get("msg", "")))
    return messages


def logged_in_order(process: ManagedProcess, *lines: str) -> None:
    """Each of ``lines`` is a ``msg`` of the process's log, in this order."""
    messages = log_messages(process)
    positions = [messages.index(line) for line in lines]
    assert positions == sorted(positions), list(zip(lines, positions, strict=True))


def test_sigterm_turns_not_ready_and_keeps_serving_until_the_drain_ends(
    started: Callable[[float], tuple[ManagedProcess, str]],
) -> None:
    process, base = started(LONG_DRAIN_S)
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        process.signal(signal.SIGTERM)

        wait_for(lambda: http.get("/readyz").status_code == 503, "/readyz to answer 503")
        assert http.get("/readyz").json() == {"status": "draining"}
        # Draining, not stopped: liveness and the API are still answered, each answer
        # closing its connection so keep-alive clients reconnect elsewhere.
        healthz = http.get("/healthz")
        assert healthz.status_code == 200
        assert healthz.headers["connection"] == "close"
        assert http.get("/users/profile").status_code == 401
        assert process.alive()

    # A second signal cuts the drain short: uvicorn's graceful shutdown follows.
    process.signal(signal.SIGTERM)
    wait_for(exited(process), "the gateway to exit")
    logged_in_order(
        process,
        "drain started: not ready, still serving",
        "drain cut short by another signal: shutting down",
        "gateway shutting down",
    )


def test_the_drain_ends_by_itself_then_the_server_shuts_down(
    started: Callable[[float], tuple[ManagedProcess, str]],
) -> None:
    process, _ = started(1.0)
    process.signal(signal.SIGTERM)

    wait_for(exited(process), "the gateway to exit")
    logged_in_order(
        process,
        "drain started: not ready, still serving",
        "drain ended: shutting down",
        "gateway shutting down",
    )


def test_without_a_drain_sigterm_shuts_down_at_once(
    started: Callable[[float], tuple[ManagedProcess, str]],
) -> None:
    process, _ = started(0.0)
    process.signal(signal.SIGTERM)

    wait_for(exited(process), "the gateway to exit")
    messages = log_messages(process)
    assert "gateway shutting down" in messages
    assert not [m for m in messages if m.startswith("drain")]
