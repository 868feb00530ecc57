"""``make run``: the whole suite on one machine.

Starts etcd, the Kafka-protocol broker and Redis unless their addresses are configured,
uses SQLite files under ``.run/`` unless a MySQL URL is configured, applies every service's
migrations, starts every service that exists (``--replicas user=3,article=2``), the WeChat
OAuth emulator and the gateway (pointed at the emulator), prints a status table, and on
Ctrl-C/SIGTERM stops everything — gateway first, infrastructure last — leaving no process
behind. The sms service's local provider writes every message (login codes) to
``<RUN_DIR>/sms.log``.

Settings (environment, prefix ``WEBOOK_DEV_``): ``RUN_DIR`` (.run), ``GATEWAY_PORT`` (8080),
``WECHAT_PORT`` (8090, the WeChat emulator),
``GRPC_BASE_PORT`` (50051; instance *i* of the *n*-th service gets base + 10·n + i),
``ETCD_PORT`` (2379), ``ETCD_PEER_PORT`` (2380), ``KAFKA_PORT`` (9092), ``REDIS_PORT`` (6380,
since 6379 is often a system Redis), and to use existing infrastructure instead:
``REDIS_URL``, ``ETCD_ENDPOINTS`` (JSON list), ``KAFKA_BOOTSTRAP``, ``MYSQL_URL``
(e.g. ``mysql+asyncmy://root@127.0.0.1:3306/webook``; the database is created if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack.infra import (
    InfraError,
    ManagedProcess,
    etcd_process,
    kafka_process,
    port_bindable,
    port_in_use,
    redis_process,
)
from devstack.suite import (
    Infra,
    available_services,
    gateway_process,
    migrate,
    service_process,
    wechat_emulator_process,
)
from kit.logging import configure_logging
from kit.sql import create_engine

logger = logging.getLogger("devstack")


class DevSettings(BaseSettings):
    """Where the local stack listens and which existing infrastructure it uses."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_DEV_", extra="ignore")

    run_dir: Path = Path(".run")
    gateway_port: int = 8080
    wechat_port: int = 8090
    grpc_base_port: int = 50051
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    kafka_port: int = 9092
    redis_port: int = 6380
    redis_url: str = ""
    etcd_endpoints: list[str] = []
    kafka_bootstrap: str = ""
    mysql_url: str = ""


def parse_replicas(spec: str, services: list[str]) -> dict[str, int]:
    """``"user=3,article=2"`` (spaces or commas) → counts, 1 for unnamed services."""
    counts = dict.fromkeys(services, 1)
    for item in spec.replace(",", " ").split():
        name, _, count = item.partition("=")
        if name not in counts:
            raise SystemExit(
                f"unknown service {name!r} in --replicas; known: {', '.join(services)}"
            )
        if not count.isdigit() or not 1 <= int(count) <= 9:
            raise SystemExit(f"replica count for {name} must be 1..9, got {count!r}")
        counts[name] = int(count)
    return counts


def _ensure_mysql_database(url: str) -> None:
    parsed = make_url(url)
    database = parsed.database
    if not database:
        raise SystemExit("WEBOOK_DEV_MYSQL_URL must name a database, e.g. .../webook")

    async def create() -> None:
        engine = create_engine(parsed.set(database="").render_as_string(hide_password=False))
        try:
            async with engine.connect() as conn:
                await conn.execute(
                    text(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
                )
        finally:
            await engine.dispose()

    asyncio.run(create())


class Stack:
    """Every process of the local stack, in start order."""

    def __init__(self, settings: DevSettings, replicas: dict[str, int]) -> None:
        self.settings = settings
        self.replicas = replicas
        self.run_dir = settings.run_dir.resolve()
        self.log_dir = self.run_dir / "logs"
        self.processes: list[tuple[ManagedProcess, str]] = []
        self.external: list[tuple[str, str]] = []

    def _check_free(self, name: str, port: int) -> None:
        if port_in_use(port) or not port_bindable(port):
            raise InfraError(
                f"port {port} for {name} is already in use; stop what is using it or set "
                f"WEBOOK_DEV_{name.upper()}_PORT (see `python -m devstack --help`)"
            )

    def _start(self, proc: ManagedProcess, addr: str) -> None:
        logger.info("starting", extra={"component": proc.name, "addr": addr})
        self.processes.append((proc, addr))
        proc.start(timeout=60)

    def start_infra(self) -> Infra:
        s = self.settings
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if s.etcd_endpoints:
            etcd = s.etcd_endpoints
            self.external.append(("etcd", ",".join(etcd)))
        else:
            self._check_free("etcd", s.etcd_port)
            self._check_free("etcd_peer", s.etcd_peer_port)
            proc = etcd_process(self.run_dir / "etcd", s.etcd_port, s.etcd_peer_port, self.log_dir)
            self._start(proc, f"127.0.0.1:{s.etcd_port}")
            etcd = [f"127.0.0.1:{s.etcd_port}"]
        if s.kafka_bootstrap:
            kafka = s.kafka_bootstrap
            self.external.append(("kafka", kafka))
        else:
            self._check_free("kafka", s.kafka_port)
            self._start(kafka_process(s.kafka_port, self.log_dir), f"127.0.0.1:{s.kafka_port}")
            kafka = f"127.0.0.1:{s.kafka_port}"
        if s.redis_url:
            redis_url = s.redis_url
            self.external.append(("redis", redis_url))
        else:
            self._check_free("redis", s.redis_port)
            self._start(redis_process(s.redis_port, self.log_dir), f"127.0.0.1:{s.redis_port}")
            redis_url = f"redis://127.0.0.1:{s.redis_port}/0"
        if s.mysql_url:
            _ensure_mysql_database(s.mysql_url)
            database_url = s.mysql_url
            self.external.append(("mysql", make_url(s.mysql_url).render_as_string()))
        else:
            database_url = f"sqlite+aiosqlite:///{self.run_dir}"
        return Infra(redis_url, etcd, kafka, database_url, sms_log_file=str(self.sms_log_file))

    @property
    def sms_log_file(self) -> Path:
        """Where the local SMS provider writes messages (login codes included)."""
        return self.run_dir / "sms.log"

    def start_suite(self, infra: Infra) -> None:
        s = self.settings
        services = list(self.replicas)
        for name in services:
            logger.info("migrating", extra={"component": name})
            migrate(name, infra, self.log_dir)
        # Instances find each other through etcd: no static addresses are handed out.
        for index, name in enumerate(services):
            for replica in range(self.replicas[name]):
                port = s.grpc_base_port + 10 * index + replica
                self._check_free(f"{name}-{replica}", port)
                proc = service_process(name, infra, port, self.log_dir, replica=replica)
                self._start(proc, f"127.0.0.1:{port}")
        self._check_free("wechat", s.wechat_port)
        wechat_base = f"http://127.0.0.1:{s.wechat_port}"
        self._start(wechat_emulator_process(s.wechat_port, self.log_dir), wechat_base)
        self._check_free("gateway", s.gateway_port)
        self._start(
            gateway_process(infra, s.gateway_port, {}, self.log_dir, wechat_base=wechat_base),
            f"http://127.0.0.1:{s.gateway_port}",
        )

    def status_table(self) -> str:
        rows = [("component", "address", "pid", "state")]
        rows += [(name, addr, "-", "external") for name, addr in self.external]
        rows += [
            (p.name, addr, str(p.pid or "-"), "running" if p.alive() else "stopped")
            for p, addr in self.processes
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def stop(self) -> None:
        for proc, _ in reversed(self.processes):
            if proc.alive():
                logger.info("stopping", extra={"component": proc.name})
            proc.stop(grace=15)


def main(argv: list[str] | None = None) -> int:
    """Run the stack until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--replicas", default="", help='instances per service, e.g. "user=3"')
    args = parser.parse_args(argv)
    configure_logging("devstack")
    settings = DevSettings()
    stack = Stack(settings, parse_replicas(args.replicas, available_services()))

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stack.start_suite(stack.start_infra())
        sys.stdout.write("\n" + stack.status_table() + "\n\n")
        sys.stdout.write(
            f"webook is up: http://127.0.0.1:{settings.gateway_port}  (logs in "
            f"{stack.log_dir}; SMS codes in {stack.sms_log_file}; Ctrl-C stops everything)\n"
        )
        sys.stdout.flush()
        while not stop.wait(1.0):
            dead = [p for p, _ in stack.processes if not p.alive()]
            for proc in dead:
                logger.error(
                    "process exited", extra={"component": proc.name, "log": str(proc.log_path)}
                )
                stack.processes = [(p, a) for p, a in stack.processes if p is not proc]
        return 0
    except (InfraError, RuntimeError) as exc:
        logger.error("start-up failed", extra={"error": str(exc)})
        sys.stderr.write(f"\nmake run: {exc}\n")
        return 1
    finally:
        stack.stop()
        time.sleep(0.1)
        sys.stdout.write("all processes stopped\n")


if __name__ == "__main__":
    raise SystemExit(main())
