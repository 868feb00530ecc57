"""``make run``: the whole suite on one machine (``python -m devstack``).

Starts etcd, the Kafka-protocol broker and Redis (in parallel) unless their addresses are
configured (the broker keeps its logs in memory; producers and outbox relays publish their
replay window again after it restarts: docs/operations.md), uses SQLite files under
``.run/`` unless a MySQL URL is configured, then — all at once — the WeChat OAuth emulator,
the WeChat Pay emulator, the gateway, and every service of :data:`devstack.catalog.CATALOG`
that exists, each as soon as its migrations are applied
(``--replicas user=3,article=2``; ``--only article`` for a service and those it calls).
It prints a status table and how long the start took, and on Ctrl-C/SIGTERM stops the
gateway and the services together, then the infrastructure, and says how long that took.
Every child is in a process group of its own and dies with the launcher, even if the
launcher is killed with SIGKILL, so no orphan keeps a port. The sms service's local
provider writes every message (login codes) to ``<RUN_DIR>/sms.log``.

The payment service pays through the WeChat Pay emulator (:mod:`devstack.wechatpay_emulator`,
keys made under ``<RUN_DIR>/wechatpay`` on the first start), which posts its notifications
to the gateway's ``/pay/callback``; to pay an order, ``curl -X POST
127.0.0.1:8091/emulator/pay -d '{"out_trade_no": "reward-<rid>"}'`` (docs/operations.md).

A service the catalog gives a ``migration_destination`` (interactive) runs with its
tables' migration configured in ``source_only`` mode, which changes nothing until an
operator switches it (``webookctl migrate``): the destination is
``<RUN_DIR>/interactive_destination.db``, or on MySQL the database
``<database>_interactive_destination``; the migrations are applied to it too.

Every gRPC hop runs over mutual TLS: a local CA and one certificate per service and for the
gateway are made under ``<RUN_DIR>/pki`` on the first start and reused after (``make clean``
removes them); the launcher logs the CA file's path at start. To call a service yourself,
present a certificate, e.g. ``grpcurl -cacert .run/pki/ca.pem -cert .run/pki/gateway.pem
-key .run/pki/gateway-key.pem -authority user.webook.internal 127.0.0.1:21000
grpc.health.v1.Health/Check``.
``WEBOOK_DEV_TLS=false`` runs everything plaintext, for debugging only.

Settings of the launcher (environment or the env file, prefix ``WEBOOK_DEV_``):
``RUN_DIR`` (.run), ``ENV_FILE`` (.env), ``GATEWAY_PORT`` (8080), ``WECHAT_PORT`` (8090),
``WECHATPAY_PORT`` (8091),
``GRPC_BASE_PORT`` (21000) and ``METRICS_BASE_PORT`` (22000): instance *r* of the service
in catalog slot *s* serves gRPC on base + 10·s + r and metrics on the metrics base + 10·s + r,
all below Linux's ephemeral range (32768-60999); ``ETCD_PORT`` (2379), ``ETCD_PEER_PORT``
(2380), ``KAFKA_PORT`` (9092), ``KAFKA_STORE_PORT`` (the broker's object store; 0, a free port),
``KAFKA_STORAGE`` (``memory``: tansu's memory, lost on its restart; ``s3``: a local object
store, :mod:`devstack.object_store`, experimental), ``REDIS_PORT`` (6380, since 6379 is
often a system Redis), ``LAG_EXPORTER_PORT`` (the Kafka lag exporter's metrics; 0, a free
port), ``TLS`` (true); to
use existing infrastructure instead: ``REDIS_URL``, ``ETCD_ENDPOINTS``
(JSON list), ``KAFKA_BOOTSTRAP``, ``MYSQL_URL`` (e.g.
``mysql+asyncmy://root@127.0.0.1:3306/webook``; the database is created if missing, and so
is ``<database>_interactive_destination`` below).

Settings of one process: every ``WEBOOK_<NAME>_*`` variable (``WEBOOK_USER_LOG_LEVEL``,
``WEBOOK_GATEWAY_EDGE``...) of the launcher's environment or of the env file reaches that
process and wins over the launcher's own values, except its listening port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Literal

from dotenv import dotenv_values
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack.catalog import MAX_REPLICAS, MIGRATION_DESTINATION, SERVICE_NAMES, spec, with_peers
from devstack.credentials import (
    CREDENTIALS_FILE,
    bootstrap_etcd,
    stack_credentials,
    write_redis_acl_file,
)
from devstack.infra import (
    BrokerStorage,
    InfraError,
    ManagedProcess,
    etcd_process,
    free_port_block,
    kafka_process,
    object_store_process,
    port_bindable,
    port_in_use,
    redis_process,
    start_all,
    stop_all,
)
from devstack.lag import ENV_PREFIX as LAG_ENV_PREFIX
from devstack.lag import lag_exporter_process
from devstack.suite import (
    GATEWAY_PREFIX,
    PAY_CALLBACK_PATH,
    Infra,
    available_services,
    gateway_process,
    service_process,
    start_services,
    wechat_emulator_process,
    wechatpay_emulator_process,
)
from devstack.tls import stack_pki
from kit.logging import configure_logging
from kit.sql import create_engine

logger = logging.getLogger("devstack")

# Seconds a stopping process gets before SIGKILL (services drain in about two).
STOP_GRACE_S = 8.0


class DevSettings(BaseSettings):
    """Where the local stack listens and which existing infrastructure it uses."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_DEV_", extra="ignore")

    run_dir: Path = Path(".run")
    env_file: Path = Path(".env")
    gateway_port: int = 8080
    wechat_port: int = 8090
    wechatpay_port: int = 8091
    grpc_base_port: int = 21000
    metrics_base_port: int = 22000
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    kafka_port: int = 9092
    # "memory" keeps the broker's data in the broker (lost when it stops) and turns the
    # producers' and relays' replay window on; "s3" keeps it in a local object store (one
    # restart under load lost acknowledged records there: docs/operations.md). Only the
    # broker talks to the store, so by default (0) it takes any free port below the
    # ephemeral range.
    kafka_store_port: int = 0
    kafka_storage: Literal["s3", "memory"] = "memory"
    redis_port: int = 6380
    # The Kafka lag exporter's metrics port (devstack.lag); 0: a free port (Prometheus finds
    # it through devstack.scrape_targets).
    lag_exporter_port: int = 0
    redis_url: str = ""
    etcd_endpoints: list[str] = []
    kafka_bootstrap: str = ""
    mysql_url: str = ""
    # Mutual TLS on every gRPC hop; false (plaintext) is for debugging only.
    tls: bool = True

    def fixed_ports(self) -> dict[str, int]:
        """The ports of the processes the launcher itself starts, by component."""
        ports = {
            "gateway": self.gateway_port,
            "wechat": self.wechat_port,
            "wechatpay": self.wechatpay_port,
        }
        if not self.etcd_endpoints:
            ports.update(etcd=self.etcd_port, etcd_peer=self.etcd_peer_port)
        if not self.kafka_bootstrap:
            ports["kafka"] = self.kafka_port
            if self.kafka_storage == "s3" and self.kafka_store_port:
                ports["kafka_store"] = self.kafka_store_port
        if not self.redis_url:
            ports["redis"] = self.redis_port
        return ports


def load_dev_settings(environ: Mapping[str, str]) -> DevSettings:
    """The launcher's settings: the environment first, then the env file if it exists."""
    env_file = Path(environ.get("WEBOOK_DEV_ENV_FILE", ".env"))
    return DevSettings(_env_file=env_file if env_file.is_file() else None)


# A process's own listening port stays the launcher's: its readiness check dials it.
_PROTECTED = {"gateway": ("PORT",)}
_PROTECTED_SERVICE = ("GRPC_PORT",)


def process_overrides(
    environ: Mapping[str, str], env_file: Path | None, names: Iterable[str]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Per-process settings handed through: ``WEBOOK_<NAME>_*`` of ``environ`` and the file.

    Returns the settings by process name (the environment wins over the file) and the
    variables left out because they would move a listening port.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(environ)
    prefixes = {name: spec(name).env_prefix for name in names}
    prefixes["gateway"] = GATEWAY_PREFIX
    overrides: dict[str, dict[str, str]] = {}
    ignored: list[str] = []
    for key in sorted(values):
        for name, prefix in prefixes.items():
            if not key.startswith(prefix):
                continue
            if key[len(prefix) :] in _PROTECTED.get(name, _PROTECTED_SERVICE):
                ignored.append(key)
            else:
                overrides.setdefault(name, {})[key] = values[key]
    return overrides, ignored


def parse_replicas(spec_text: str, services: list[str]) -> dict[str, int]:
    """``"user=3,article=2"`` (spaces or commas) → counts, the catalog's default otherwise."""
    counts = {name: spec(name).replicas for name in services}
    for item in spec_text.replace(",", " ").split():
        name, _, count = item.partition("=")
        if name not in counts:
            raise SystemExit(
                f"unknown service {name!r} in --replicas; known: {', '.join(services)}"
            )
        if not count.isdigit() or not 1 <= int(count) <= MAX_REPLICAS:
            raise SystemExit(f"replica count for {name} must be 1..{MAX_REPLICAS}, got {count!r}")
        counts[name] = int(count)
    return counts


def ensure_mysql_database(url: str, setting: str = "WEBOOK_DEV_MYSQL_URL") -> None:
    """Create the database ``url`` names if missing (``setting``: where the URL came from)."""
    parsed = make_url(url)
    database = parsed.database
    if not database:
        raise SystemExit(f"{setting} must name a database, e.g. .../webook")

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
    """Every process of the local stack, and how long starting and stopping took."""

    def __init__(
        self,
        settings: DevSettings,
        replicas: dict[str, int],
        overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = replicas
        self.overrides = dict(overrides or {})
        self.run_dir = settings.run_dir.resolve()
        self.log_dir = self.run_dir / "logs"
        self.infra_processes: list[tuple[ManagedProcess, str]] = []
        self.service_processes: list[tuple[ManagedProcess, str]] = []
        self.edge_processes: list[tuple[ManagedProcess, str]] = []
        self.external: list[tuple[str, str]] = []
        self.infra_seconds = 0.0
        self.suite_seconds = 0.0

    @property
    def processes(self) -> list[tuple[ManagedProcess, str]]:
        """Every process started, with its address, in start order."""
        return self.infra_processes + self.service_processes + self.edge_processes

    def grpc_port(self, name: str, replica: int) -> int:
        """The gRPC port of an instance."""
        return spec(name).grpc_port(self.settings.grpc_base_port, replica)

    def metrics_port(self, name: str, replica: int) -> int:
        """The metrics port of an instance."""
        return spec(name).grpc_port(self.settings.metrics_base_port, replica)

    def planned_ports(self) -> dict[str, tuple[int, str]]:
        """Every port the launcher will listen on: what listens there → port, its setting."""
        ports = {
            name: (port, f"WEBOOK_DEV_{name.upper()}_PORT")
            for name, port in self.settings.fixed_ports().items()
        }
        for name, count in self.replicas.items():
            for replica in range(count):
                instance = f"{name}-{replica}"
                ports[instance] = (self.grpc_port(name, replica), "WEBOOK_DEV_GRPC_BASE_PORT")
                ports[f"{instance} metrics"] = (
                    self.metrics_port(name, replica),
                    "WEBOOK_DEV_METRICS_BASE_PORT",
                )
        return ports

    def unplanned_port(self) -> int:
        """A port for a process whose setting names none: bindable now and outside the
        planned ports, which may be free only because their process has not started yet."""
        return free_port_block(1, avoid={port for port, _ in self.planned_ports().values()})

    def check_ports(self) -> None:
        """Refuse to start when a planned port is taken, naming it and its setting."""
        for name, (port, setting) in self.planned_ports().items():
            if port_in_use(port) or not port_bindable(port):
                raise InfraError(
                    f"port {port} for {name} is already in use; stop what is using it or set "
                    f"{setting} (see `python -m devstack --help`)"
                )

    @property
    def sms_log_file(self) -> Path:
        """Where the local SMS provider writes messages (login codes included)."""
        return self.run_dir / "sms.log"

    @property
    def wechatpay_keys_dir(self) -> Path:
        """The local WeChat Pay's merchant and platform keys (made on the first start)."""
        return self.run_dir / "wechatpay"

    @property
    def wechatpay_base(self) -> str:
        """The WeChat Pay emulator's base URL."""
        return f"http://127.0.0.1:{self.settings.wechatpay_port}"

    def start_infra(self) -> Infra:
        """Start the infrastructure that is not configured externally, in parallel."""
        started = time.monotonic()
        s = self.settings
        self.log_dir.mkdir(parents=True, exist_ok=True)
        etcd, kafka, redis_url = s.etcd_endpoints, s.kafka_bootstrap, s.redis_url
        if etcd:
            self.external.append(("etcd", ",".join(etcd)))
        else:
            proc = etcd_process(self.run_dir / "etcd", s.etcd_port, s.etcd_peer_port, self.log_dir)
            self.infra_processes.append((proc, f"127.0.0.1:{s.etcd_port}"))
            etcd = [f"127.0.0.1:{s.etcd_port}"]
        # tansu connects to its object store before it listens: the store starts with the
        # rest of the infrastructure, the broker once the store is ready.
        broker: list[ManagedProcess] = []
        storage = BrokerStorage.memory()
        if kafka:
            self.external.append(("kafka", kafka))
        else:
            if s.kafka_storage == "s3":
                store_port = s.kafka_store_port or self.unplanned_port()
                proc = object_store_process(store_port, self.log_dir)
                self.infra_processes.append((proc, f"127.0.0.1:{store_port}"))
                storage = BrokerStorage.object_store(store_port)
            broker = [kafka_process(s.kafka_port, self.log_dir, storage)]
            kafka = f"127.0.0.1:{s.kafka_port}"
        # Every workload logs in to the etcd and Redis the stack starts itself as itself
        # (docs/security.md); external ones are used as configured.
        credentials = (
            stack_credentials(self.run_dir) if not (s.etcd_endpoints or redis_url) else None
        )
        if redis_url:
            self.external.append(("redis", redis_url))
        else:
            acl_file = (
                write_redis_acl_file(self.run_dir / "redis-users.acl", credentials)
                if credentials is not None
                else None
            )
            proc = redis_process(s.redis_port, self.log_dir, acl_file=acl_file)
            self.infra_processes.append((proc, f"127.0.0.1:{s.redis_port}"))
            redis_url = f"redis://127.0.0.1:{s.redis_port}/0"
        first = [proc for proc, _ in self.infra_processes]
        self.infra_processes += [(proc, kafka) for proc in broker]
        for proc, _ in self.infra_processes:
            proc.die_with_parent = True
            logger.info("starting", extra={"component": proc.name})
        if storage.persistent:
            start_all(first, timeout=60)
            start_all(broker, timeout=60)
        else:
            start_all(first + broker, timeout=60)
        if credentials is not None:
            bootstrap_etcd(etcd[0], credentials)
            logger.info(
                "infrastructure credentials",
                extra={"file": str(self.run_dir / CREDENTIALS_FILE)},
            )
        if s.mysql_url:
            ensure_mysql_database(s.mysql_url)
            database_url = s.mysql_url
            self.external.append(("mysql", make_url(s.mysql_url).render_as_string()))
        else:
            database_url = f"sqlite+aiosqlite:///{self.run_dir}"
        if s.tls:
            pki = stack_pki(self.run_dir)
            logger.info("mutual TLS", extra={"ca_file": str(pki.ca_file)})
        else:
            pki = None
            logger.warning("mutual TLS off: every gRPC hop is plaintext (WEBOOK_DEV_TLS)")
        infra = Infra(
            redis_url,
            etcd,
            kafka,
            database_url,
            sms_log_file=str(self.sms_log_file),
            overrides=self.overrides,
            pki=pki,
            credentials=credentials,
            persistent_broker=storage.persistent,
            wechatpay_keys_dir=str(self.wechatpay_keys_dir),
            wechatpay_base=self.wechatpay_base,
            pay_notify_url=f"http://127.0.0.1:{s.gateway_port}{PAY_CALLBACK_PATH}",
        )
        if s.mysql_url:
            self.ensure_migration_destinations(infra)
        self.infra_seconds = time.monotonic() - started
        return infra

    def ensure_migration_destinations(self, infra: Infra) -> None:
        """On MySQL, create the databases the stack's services move their tables to (as
        the stack's own database is), whether the catalog's or a developer's setting."""
        for name in self.replicas:
            setting = f"{spec(name).env_prefix}{MIGRATION_DESTINATION}"
            url = self.overrides.get(name, {}).get(setting, infra.migration_destination_for(name))
            if url.startswith("mysql"):
                ensure_mysql_database(url, setting)
                logger.info(
                    "migration destination",
                    extra={"component": name, "database": make_url(url).database},
                )

    def start_suite(self, infra: Infra) -> None:
        """Start the services, the WeChat emulators and the gateway, all at once."""
        started = time.monotonic()
        s = self.settings
        wechat_base = f"http://127.0.0.1:{s.wechat_port}"
        wechat = wechat_emulator_process(s.wechat_port, self.log_dir, die_with_parent=True)
        wechatpay = wechatpay_emulator_process(
            s.wechatpay_port, self.wechatpay_keys_dir, self.log_dir, die_with_parent=True
        )
        # No static peers: the gateway and the services find each other through etcd.
        gateway = gateway_process(
            infra, s.gateway_port, {}, self.log_dir, wechat_base=wechat_base, die_with_parent=True
        )

        def instance(name: str, replica: int) -> ManagedProcess:
            proc = service_process(
                name,
                infra,
                self.grpc_port(name, replica),
                self.log_dir,
                replica=replica,
                metrics_port=self.metrics_port(name, replica),
                die_with_parent=True,
            )
            address = f"127.0.0.1:{self.grpc_port(name, replica)}"
            self.service_processes.append((proc, address))
            return proc

        # Lag read from the broker, whether or not the consumers run (docs/events.md, "Lag").
        exporter_port = s.lag_exporter_port or self.unplanned_port()
        exporter = lag_exporter_process(
            infra.kafka_bootstrap,
            exporter_port,
            self.log_dir,
            overrides={k: v for k, v in os.environ.items() if k.startswith(LAG_ENV_PREFIX)},
        )
        exporter.die_with_parent = True
        self.edge_processes = [
            (wechat, wechat_base),
            (wechatpay, self.wechatpay_base),
            (gateway, f"http://127.0.0.1:{s.gateway_port}"),
            (exporter, f"http://127.0.0.1:{exporter_port}/metrics"),
        ]
        logger.info("starting", extra={"component": "suite", "services": list(self.replicas)})
        start_services(
            self.replicas,
            infra,
            self.log_dir,
            instance,
            replicas=self.replicas,
            also=[wechat, wechatpay, gateway, exporter],
            timeout=120,
        )
        self.suite_seconds = time.monotonic() - started

    def status_table(self) -> str:
        """Component, address, pid and state of every process."""
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

    def stop(self) -> float:
        """Stop the gateway and services together, then the infrastructure; the seconds taken."""
        started = time.monotonic()
        for tier in (self.edge_processes + self.service_processes, self.infra_processes):
            running = [proc for proc, _ in tier if proc.process is not None]
            if any(proc.alive() for proc in running):
                logger.info("stopping", extra={"components": [p.name for p in running]})
            stop_all(running, grace=STOP_GRACE_S)
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """Run the stack until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--replicas", default="", help='instances per service, e.g. "user=3"')
    parser.add_argument(
        "--only",
        default="",
        help='start only these services and those they call, e.g. "article" (default: all)',
    )
    args = parser.parse_args(argv)
    configure_logging("devstack")
    settings = load_dev_settings(os.environ)
    names = available_services()
    if args.only:
        unknown = [n for n in args.only.replace(",", " ").split() if n not in SERVICE_NAMES]
        if unknown:
            raise SystemExit(f"unknown service(s) {unknown} in --only; known: {SERVICE_NAMES}")
        wanted = with_peers(args.only.replace(",", " ").split())
        names = [name for name in names if name in wanted]
    overrides, ignored = process_overrides(os.environ, settings.env_file, [*names])
    for variable in ignored:
        logger.warning("setting ignored: the launcher assigns ports", extra={"variable": variable})
    stack = Stack(settings, parse_replicas(args.replicas, names), overrides)

    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:  # abort the start-up; the finally below stops what runs
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    launched = time.monotonic()
    try:
        stack.check_ports()
        stack.start_suite(stack.start_infra())
        starting = False
        total = time.monotonic() - launched
        sys.stdout.write("\n" + stack.status_table() + "\n\n")
        sys.stdout.write(
            f"started in {total:.1f}s: infrastructure {stack.infra_seconds:.1f}s, then every "
            f"service and the gateway ready {stack.suite_seconds:.1f}s later\n"
            f"webook is up: http://127.0.0.1:{settings.gateway_port}  (logs in "
            f"{stack.log_dir}; SMS codes in {stack.sms_log_file}; Ctrl-C stops everything)\n"
        )
        sys.stdout.flush()
        reported: set[str] = set()
        while not stop.wait(1.0):
            for proc, _ in stack.processes:
                if proc.name not in reported and not proc.alive():
                    reported.add(proc.name)
                    logger.error(
                        "process exited",
                        extra={"component": proc.name, "log": str(proc.log_path)},
                    )
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("\nmake run: interrupted during start-up\n")
        return 130
    except (InfraError, RuntimeError) as exc:
        logger.error("start-up failed", extra={"error": str(exc)})
        sys.stderr.write(f"\nmake run: {exc}\n")
        return 1
    finally:
        starting = False
        seconds = stack.stop()
        sys.stdout.write(f"all processes stopped in {seconds:.1f}s\n")
        sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
