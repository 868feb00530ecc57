"""Start the webook processes themselves: gRPC services, the gateway, the WeChat emulator.

Shared by ``make run`` (:mod:`devstack.__main__`) and the end-to-end tests. A service
process is ``python -m services.<name>`` configured only through its ``WEBOOK_<NAME>_*``
environment variables; readiness is its standard gRPC health service answering SERVING.
The gateway and the WeChat emulator (:mod:`devstack.wechat_emulator`) are ready when
their ``/healthz`` answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.infra import ManagedProcess
from devstack.wechat_emulator import DEV_APP_ID, DEV_APP_SECRET

# Start order: services others depend on come first.
SERVICES = ("user", "sms", "article", "interactive", "comment", "follow", "search")


def available_services() -> list[str]:
    """Services of :data:`SERVICES` that exist in this checkout."""
    found = []
    for name in SERVICES:
        if importlib.util.find_spec(f"services.{name}") is None:
            continue
        if importlib.util.find_spec(f"services.{name}.__main__") is not None:
            found.append(name)
    return found


def grpc_serving(addr: str) -> bool:
    """Whether the gRPC health service at ``addr`` answers SERVING."""
    try:
        with grpc.insecure_channel(addr) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=0.5
            )
    except grpc.RpcError:
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Infra:
    """Addresses of the infrastructure every webook process is pointed at."""

    redis_url: str
    etcd_endpoints: list[str]
    kafka_bootstrap: str
    # A SQLAlchemy URL prefix: a SQLite directory ("sqlite+aiosqlite:////abs/dir") gets one
    # file per service; a MySQL server URL gets the database name appended.
    database_url: str
    mode: str = "dev"
    extra_env: dict[str, str] = field(default_factory=dict)
    # The file the sms service's local provider appends messages (login codes) to; empty:
    # the service's default (.run/sms.log, relative to its working directory).
    sms_log_file: str = ""

    def database_for(self, service: str) -> str:
        """The database URL a given service uses."""
        if self.database_url.startswith("sqlite"):
            return f"{self.database_url.rstrip('/')}/{service}.db"
        return self.database_url


def _base_env() -> dict[str, str]:
    # Children must not inherit another process's configuration by accident.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def service_env(
    name: str, infra: Infra, grpc_port: int, peers: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one service process."""
    prefix = f"WEBOOK_{name.upper()}_"
    env = _base_env()
    env.update(
        {
            f"{prefix}MODE": infra.mode,
            f"{prefix}GRPC_PORT": str(grpc_port),
            f"{prefix}METRICS_PORT": "0",
            f"{prefix}DATABASE_URL": infra.database_for(name),
            f"{prefix}REDIS_URL": infra.redis_url,
            f"{prefix}KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            f"{prefix}ETCD_ENDPOINTS": json.dumps(infra.etcd_endpoints),
            f"{prefix}PEERS": json.dumps(dict(peers)),
        }
    )
    if name == "sms" and infra.sms_log_file:
        provider = {"name": "local", "kind": "local", "log_file": infra.sms_log_file}
        env[f"{prefix}PROVIDERS"] = json.dumps([provider])
    env.update({k.replace("{PREFIX}", prefix): v for k, v in infra.extra_env.items()})
    return env


def migrate(name: str, infra: Infra, log_dir: Path) -> None:
    """Apply a service's migrations (``python -m services.<name> migrate``); raises on failure."""
    env = service_env(name, infra, 0, {})
    log = log_dir / f"{name}-migrate.log"
    with log.open("ab") as out:
        result = subprocess.run(
            [sys.executable, "-m", f"services.{name}", "migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=120,
        )
    if result.returncode != 0:
        raise RuntimeError(f"migrations of {name} failed; see {log}")


def service_process(
    name: str,
    infra: Infra,
    grpc_port: int,
    log_dir: Path,
    *,
    peers: Mapping[str, str] | None = None,
    replica: int = 0,
) -> ManagedProcess:
    """A (not yet started) service process listening on ``grpc_port``."""
    addr = f"127.0.0.1:{grpc_port}"
    return ManagedProcess(
        name=f"{name}-{replica}",
        argv=[sys.executable, "-m", f"services.{name}"],
        log_path=log_dir / f"{name}-{replica}.log",
        ready=lambda: grpc_serving(addr),
        env=service_env(name, infra, grpc_port, peers or {}),
    )


def wechat_emulator_process(port: int, log_dir: Path) -> ManagedProcess:
    """A (not yet started) WeChat OAuth emulator on ``port``, for the development app."""
    return ManagedProcess(
        name="wechat-emulator",
        argv=[
            sys.executable,
            "-m",
            "devstack.wechat_emulator",
            "--port",
            str(port),
            "--app-id",
            DEV_APP_ID,
        ],
        log_path=log_dir / "wechat-emulator.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        env=_base_env(),
    )


def gateway_process(
    infra: Infra,
    port: int,
    peers: Mapping[str, str],
    log_dir: Path,
    *,
    wechat_base: str = "",
) -> ManagedProcess:
    """A (not yet started) gateway process on ``port``.

    ``wechat_base``: the base URL of a WeChat emulator to log in with (both its authorize
    page and its API), the callback being this gateway's ``/oauth2/wechat/callback``.
    """
    env = _base_env()
    env.update(
        {
            "WEBOOK_GATEWAY_MODE": infra.mode,
            "WEBOOK_GATEWAY_PORT": str(port),
            "WEBOOK_GATEWAY_REDIS_URL": infra.redis_url,
            "WEBOOK_GATEWAY_PEERS": json.dumps(dict(peers)),
            "WEBOOK_GATEWAY_ETCD_ENDPOINTS": json.dumps(infra.etcd_endpoints),
            "WEBOOK_GATEWAY_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        }
    )
    if wechat_base:
        env.update(
            {
                "WEBOOK_GATEWAY_WECHAT_AUTHORIZE_BASE": wechat_base,
                "WEBOOK_GATEWAY_WECHAT_API_BASE": wechat_base,
                "WEBOOK_GATEWAY_WECHAT_APP_ID": DEV_APP_ID,
                "WEBOOK_GATEWAY_WECHAT_APP_SECRET": DEV_APP_SECRET,
                "WEBOOK_GATEWAY_WECHAT_REDIRECT_URI": (
                    f"http://127.0.0.1:{port}/oauth2/wechat/callback"
                ),
            }
        )
    env.update({k.replace("{PREFIX}", "WEBOOK_GATEWAY_"): v for k, v in infra.extra_env.items()})
    return ManagedProcess(
        name="gateway",
        argv=[sys.executable, "-m", "gateway"],
        log_path=log_dir / "gateway.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        env=env,
    )
