"""``make run``'s launcher (``python -m devstack``) as a developer uses it, on free ports.

It starts the whole suite, registers every instance in etcd, says how long starting and
stopping took and leaves no process behind on Ctrl-C; killed with SIGKILL it still leaves
no process and no port behind (its children die with it); a ``WEBOOK_<NAME>_*`` setting,
from the environment or the env file, reaches that process; a busy port is named; and its
default ports stay out of Linux's ephemeral range, where outgoing connections take ports.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devstack.__main__ import DevSettings, Stack
from devstack.catalog import CATALOG, MAX_REPLICAS
from devstack.credentials import stack_credentials
from devstack.infra import free_port, free_port_block, port_in_use

pytestmark = pytest.mark.e2e

EPHEMERAL = range(32768, 61000)
# Generous: a loaded 2-core machine starts the suite in well under a minute.
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 60.0


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _etcd_token(etcd_port: int, run_dir: Path) -> str:
    """A token of etcd's ``root``: the stack runs etcd with authentication on."""
    root = stack_credentials(run_dir).etcd_root
    body = json.dumps({"name": root.username, "password": root.password}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{etcd_port}/v3/auth/authenticate", body)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return str(json.loads(answer.read())["token"])


def _registered(etcd_port: int, run_dir: Path, service: str) -> list[dict[str, Any]]:
    """Registration records under the service's registry prefix (etcd's JSON gateway)."""
    prefix = f"/webook/services/{service}/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps(
        {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}
    ).encode()
    url = f"http://127.0.0.1:{etcd_port}/v3/kv/range"
    anonymous = urllib.request.Request(url, data=body)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(anonymous, timeout=5)  # etcd refuses a caller without a login
    headers = {"Authorization": _etcd_token(etcd_port, run_dir)}
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=5) as answer:
        kvs = json.loads(answer.read()).get("kvs", [])
    return [json.loads(base64.b64decode(kv["value"])) for kv in kvs]


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


def _launcher_env(run_dir: Path) -> dict[str, str]:
    """A launcher environment on free ports, none of the caller's WEBOOK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    slots = max(spec.port_slot for spec in CATALOG) + 1
    grpc_base = free_port_block(10 * slots)
    env.update(
        {
            "WEBOOK_DEV_RUN_DIR": str(run_dir),
            "WEBOOK_DEV_ENV_FILE": str(run_dir.parent / "no.env"),
            "WEBOOK_DEV_GATEWAY_PORT": str(free_port()),
            "WEBOOK_DEV_WECHAT_PORT": str(free_port()),
            "WEBOOK_DEV_WECHATPAY_PORT": str(free_port()),
            # Instance r of the service in slot s listens on base + 10s + r: whole blocks.
            "WEBOOK_DEV_GRPC_BASE_PORT": str(grpc_base),
            "WEBOOK_DEV_METRICS_BASE_PORT": str(
                free_port_block(10 * slots, avoid=range(grpc_base, grpc_base + 10 * slots))
            ),
            "WEBOOK_DEV_ETCD_PORT": str(free_port()),
            "WEBOOK_DEV_ETCD_PEER_PORT": str(free_port()),
            "WEBOOK_DEV_KAFKA_PORT": str(free_port()),
            "WEBOOK_DEV_REDIS_PORT": str(free_port()),
        }
    )
    return env


class Launcher:
    """A running ``python -m devstack`` and everything it printed so far."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def wait_up(self) -> None:
        """Wait until it says the stack is up; fail with its output if it never does."""
        if (
            not _wait(
                lambda: "webook is up" in self.output or self.process.poll() is not None,
                START_DEADLINE_S,
            )
            or "webook is up" not in self.output
        ):
            self.stop(signal.SIGKILL)
            pytest.fail(f"the stack never came up; the launcher said:\n{self.output[-4000:]}")

    def stop(self, signum: int) -> int:
        """Send ``signum`` and wait for the launcher to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=STOP_DEADLINE_S)
        self._reader.join(timeout=STOP_DEADLINE_S)
        return code


@pytest.fixture
def launch() -> Iterator[Callable[..., Launcher]]:
    """Starts launchers with given environments and arguments; kills what is left after."""
    launched: list[Launcher] = []

    def start(env: dict[str, str], *args: str) -> Launcher:
        launched.append(Launcher(env, *args))
        return launched[-1]

    yield start
    for launcher in launched:
        launcher.stop(signal.SIGKILL)


def test_launcher_starts_suite_and_stops_everything_on_ctrl_c(
    tmp_path: Path, launch: Callable[..., Launcher]
) -> None:
    env = _launcher_env(tmp_path / "run")
    gateway_port = int(env["WEBOOK_DEV_GATEWAY_PORT"])
    launcher = launch(env, "--replicas", "user=2")
    launcher.wait_up()
    children = psutil.Process(launcher.process.pid).children(recursive=True)
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
    # An instance registers right after it starts serving.
    assert _wait(
        lambda: (
            len(
                _registered(
                    int(env["WEBOOK_DEV_ETCD_PORT"]), Path(env["WEBOOK_DEV_RUN_DIR"]), "user"
                )
            )
            == 2
        ),
        30,
    )
    _signup_through_gateway(gateway_port)

    code = launcher.stop(signal.SIGINT)

    assert code == 0, launcher.output
    assert "component" in launcher.output  # the status table was printed
    assert "started in " in launcher.output
    assert "all processes stopped in " in launcher.output
    survivors = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, survivors
    assert not port_in_use(gateway_port)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigkill_leaves_nothing_and_settings_reach_their_process(
    tmp_path: Path, launch: Callable[..., Launcher]
) -> None:
    env = _launcher_env(tmp_path / "run")
    env_file = tmp_path / "dev.env"
    env_file.write_text("# settings of one process\nWEBOOK_USER_INSTANCE_VERSION=from-the-file\n")
    env["WEBOOK_DEV_ENV_FILE"] = str(env_file)
    env["WEBOOK_USER_INSTANCE_ZONE"] = "from-the-environment"
    env["WEBOOK_USER_GRPC_PORT"] = str(free_port())  # ports stay the launcher's
    launcher = launch(env, "--only", "user")
    launcher.wait_up()
    etcd_port = int(env["WEBOOK_DEV_ETCD_PORT"])
    assert _wait(
        lambda: len(_registered(etcd_port, Path(env["WEBOOK_DEV_RUN_DIR"]), "user")) == 1, 30
    )

    [record] = _registered(etcd_port, Path(env["WEBOOK_DEV_RUN_DIR"]), "user")
    assert record["zone"] == "from-the-environment"
    assert record["version"] == "from-the-file"
    assert record["addr"] == f"127.0.0.1:{env['WEBOOK_DEV_GRPC_BASE_PORT']}"
    children = psutil.Process(launcher.process.pid).children(recursive=True)
    names = " ".join(" ".join(c.cmdline()) for c in children)
    for expected in ("etcd", "tansu", "redis-server", "services.user", "gateway"):
        assert expected in names
    assert "services.sms" not in names
    ports = [
        int(env[name])
        for name in (
            "WEBOOK_DEV_GATEWAY_PORT",
            "WEBOOK_DEV_WECHAT_PORT",
            "WEBOOK_DEV_WECHATPAY_PORT",
            "WEBOOK_DEV_GRPC_BASE_PORT",
            "WEBOOK_DEV_METRICS_BASE_PORT",
            "WEBOOK_DEV_ETCD_PORT",
            "WEBOOK_DEV_KAFKA_PORT",
            "WEBOOK_DEV_REDIS_PORT",
        )
    ]
    assert all(port_in_use(port) for port in ports)

    assert launcher.stop(signal.SIGKILL) == -signal.SIGKILL

    pids = [c.pid for c in children]
    assert _wait(lambda: all(_gone(pid) for pid in pids), STOP_DEADLINE_S), [
        " ".join(psutil.Process(pid).cmdline()) for pid in pids if not _gone(pid)
    ]
    assert _wait(lambda: not any(port_in_use(port) for port in ports), STOP_DEADLINE_S)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        env = _launcher_env(tmp_path / "run")
        env["WEBOOK_DEV_ETCD_PORT"] = str(busy)
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


def test_default_ports_are_outside_the_ephemeral_range(tmp_path: Path) -> None:
    settings = DevSettings.model_construct()  # the defaults, whatever the environment says
    stack = Stack(settings, {spec.name: MAX_REPLICAS for spec in CATALOG})
    planned = stack.planned_ports()
    assert len(planned) == len({port for port, _ in planned.values()})  # no two share one
    assert not [name for name, (port, _) in planned.items() if port in EPHEMERAL]
