"""``make run``'s launcher starts the whole suite and leaves no process behind on Ctrl-C."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devstack.infra import free_port, free_port_block, port_in_use

pytestmark = pytest.mark.e2e


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.2)
    return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _registered_instances(etcd_port: int, service: str) -> list[str]:
    """Addresses registered under the service's registry prefix (etcd's JSON gateway)."""
    prefix = f"/webook/services/{service}/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps(
        {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}
    ).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{etcd_port}/v3/kv/range", data=body)
    with urllib.request.urlopen(request, timeout=5) as answer:
        kvs = json.loads(answer.read()).get("kvs", [])
    return [json.loads(base64.b64decode(kv["value"]))["addr"] for kv in kvs]


def _signup_through_gateway(port: int) -> None:
    payload = {
        "email": "launcher@example.com",
        "password": "a#1bcdefg",
        "confirmPassword": "a#1bcdefg",
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/users/signup",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["code"] == 0


def test_launcher_starts_suite_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    gateway_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env.update(
        {
            "WEBOOK_DEV_RUN_DIR": str(tmp_path / "run"),
            "WEBOOK_DEV_GATEWAY_PORT": str(gateway_port),
            "WEBOOK_DEV_WECHAT_PORT": str(free_port()),
            # Instance n of service k listens on base + 10k + n: take a whole free block.
            "WEBOOK_DEV_GRPC_BASE_PORT": str(free_port_block(80)),
            "WEBOOK_DEV_ETCD_PORT": str(free_port()),
            "WEBOOK_DEV_ETCD_PEER_PORT": str(free_port()),
            "WEBOOK_DEV_KAFKA_PORT": str(free_port()),
            "WEBOOK_DEV_REDIS_PORT": str(free_port()),
        }
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--replicas", "user=2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        if not _wait(lambda: _healthy(gateway_port) or launcher.poll() is not None, 90):
            launcher.kill()
        if not _healthy(gateway_port):
            output, _ = launcher.communicate(timeout=30)
            pytest.fail(f"gateway never became healthy; launcher said:\n{output[-4000:]}")
        children = psutil.Process(launcher.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for expected in (
            "etcd",
            "tansu",
            "redis-server",
            "services.user",
            "services.sms",
            "devstack.wechat_emulator",
            "gateway",
        ):
            assert expected in names
        assert sum("services.user" in " ".join(c.cmdline()) for c in children) == 2
        registered = _registered_instances(int(env["WEBOOK_DEV_ETCD_PORT"]), "user")
        assert len(registered) == 2, registered
        _signup_through_gateway(gateway_port)
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 0, output
    assert "component" in output  # the status table was printed
    assert "all processes stopped" in output
    survivors = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, survivors
    assert not port_in_use(gateway_port)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
        env.update(
            {
                "WEBOOK_DEV_RUN_DIR": str(tmp_path / "run"),
                "WEBOOK_DEV_ETCD_PORT": str(busy),
                "WEBOOK_DEV_ETCD_PEER_PORT": str(free_port()),
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "devstack"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {busy} for etcd is already in use" in result.stdout + result.stderr
