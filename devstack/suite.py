"""Start the webook processes themselves: gRPC services, the gateway, the WeChat emulators.

Shared by ``make run`` (:mod:`devstack.__main__`), the end-to-end and deployment tests, the
chaos stack and the benchmarks, so every launcher configures a process the same way. Which
services exist and what each needs comes from :mod:`devstack.catalog`. A service process is
``python -m services.<name>`` configured only through its ``WEBOOK_<NAME>_*`` environment
variables; readiness is its standard gRPC health service answering SERVING. The gateway
and the WeChat emulators (login: :mod:`devstack.wechat_emulator`; pay:
:mod:`devstack.wechatpay_emulator`) are ready when their ``/healthz`` answers. The payment
service is pointed at the WeChat Pay emulator (its keys under the stack's data directory,
notifications posted to the gateway's ``/pay/callback``) through the catalog's settings.

Every gRPC hop runs over mutual TLS when :attr:`Infra.pki` is set, which every launcher
does unless told otherwise (:mod:`devstack.tls`): each process gets its own certificate,
and whoever calls a service directly uses :meth:`Infra.channel` to present one.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from devstack.catalog import (
    CATALOG,
    MIGRATION_DESTINATION,
    REPLICA_DIRS,
    LocalContext,
    local_settings,
    spec,
)
from devstack.credentials import StackCredentials
from devstack.infra import InfraError, ManagedProcess, stop_all, wait_ready
from devstack.tls import GATEWAY, CallerTls, tls_env
from devstack.wechat_emulator import DEV_APP_ID, DEV_APP_SECRET
from devstack.wechatpay_emulator import DEFAULT_PORT as WECHATPAY_DEFAULT_PORT
from devstack.wechatpay_emulator import ensure_keys
from kit.security.pki import Pki
from kit.sql import sqlite_file

GATEWAY_PREFIX = "WEBOOK_GATEWAY_"
# The gateway route WeChat Pay posts payment notifications to.
PAY_CALLBACK_PATH = "/pay/callback"
PAY_NOTIFY_DEFAULT = f"http://127.0.0.1:8080{PAY_CALLBACK_PATH}"


def available_services() -> list[str]:
    """The catalog's services that exist in this checkout, in catalog order."""
    return [entry.name for entry in CATALOG if entry.available()]


def grpc_serving(addr: str, tls: CallerTls | None = None) -> bool:
    """Whether the gRPC health service at ``addr`` answers SERVING.

    ``tls``: call over mutual TLS with that client certificate (a plaintext call otherwise).
    """
    try:
        with tls.sync_channel(addr) if tls else grpc.insecure_channel(addr) as channel:
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
    """Addresses of the infrastructure every webook process is pointed at, and extra settings."""

    redis_url: str
    etcd_endpoints: list[str]
    kafka_bootstrap: str
    # A SQLite directory ("sqlite+aiosqlite:////abs/dir"): one file per service; or a MySQL
    # URL naming the database every service shares.
    database_url: str
    mode: str = "dev"
    # Added to every process's environment; "{PREFIX}" stands for the process's own prefix.
    extra_env: dict[str, str] = field(default_factory=dict)
    # The file the sms service's local provider appends messages (login codes) to; empty:
    # the service's default (.run/sms.log, relative to its working directory).
    sms_log_file: str = ""
    # Settings for one process only, applied last: process name ("user", "gateway") →
    # full variable name → value. ``make run`` fills it from the developer's environment.
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # The stack's CA and workload certificates (devstack.tls.stack_pki): every gRPC hop
    # then runs over mutual TLS. ``None`` runs plaintext, for debugging only; required, so
    # that no launcher drops TLS by leaving it out.
    pki: Pki | None = field(kw_only=True)
    # --- infrastructure credentials (devstack.credentials) ---
    # Each process's etcd user and Redis user; ``None``: the infrastructure runs without
    # authentication (the shared test etcd and Redis, for now).
    credentials: StackCredentials | None = field(default=None, kw_only=True)
    # Whether the broker keeps its data across its own restarts (object storage): the
    # catalog then turns the producers' replay window off (devstack.catalog).
    persistent_broker: bool = field(default=False, kw_only=True)
    # --- the local WeChat Pay (devstack.wechatpay_emulator) ---
    # The directory of its keys; "": ``wechatpay`` beside the SQLite databases (under
    # ``.run`` on MySQL). Its base URL; "": the emulator's default port. Where it posts
    # notifications; "": the gateway's /pay/callback on its default port.
    wechatpay_keys_dir: str = field(default="", kw_only=True)
    wechatpay_base: str = field(default="", kw_only=True)
    pay_notify_url: str = field(default="", kw_only=True)

    def wechatpay_keys_path(self) -> Path:
        """Where the local WeChat Pay's keys are (see :attr:`wechatpay_keys_dir`)."""
        if self.wechatpay_keys_dir:
            return Path(self.wechatpay_keys_dir)
        directory = (
            sqlite_file(self.database_url) if self.database_url.startswith("sqlite") else None
        )
        return (directory if directory is not None else Path(".run")) / "wechatpay"

    def credentials_env(self, identity: str, prefix: str) -> dict[str, str]:
        """Workload ``identity``'s etcd login and Redis URL with its user (none when off)."""
        if self.credentials is None:
            return {}
        return self.credentials.env(identity, prefix, self.redis_url)

    def database_for(self, service: str) -> str:
        """The database URL a given service uses."""
        if self.database_url.startswith("sqlite"):
            return f"{self.database_url.rstrip('/')}/{service}.db"
        return self.database_url

    def migration_destination_for(self, service: str) -> str:
        """The database a service's tables are being moved to (the catalog's
        ``migration_destination``): a SQLite file beside the others, or on MySQL the
        database ``<stack database>_<name>``, which the launcher creates; "" for none."""
        name = spec(service).migration_destination
        if not name:
            return ""
        if self.database_url.startswith("sqlite"):
            return f"{self.database_url.rstrip('/')}/{name}.db"
        url = make_url(self.database_url)
        database = f"{url.database}_{name}" if url.database else name
        return url.set(database=database).render_as_string(hide_password=False)

    def tls_env(self, identity: str, prefix: str) -> dict[str, str]:
        """The TLS settings of workload ``identity``'s process (none when TLS is off)."""
        return tls_env(self.pki, identity, prefix) if self.pki else {}

    def client_tls(self, service: str, *, as_identity: str = GATEWAY) -> CallerTls | None:
        """How to call service ``service`` as workload ``as_identity``; ``None``: plaintext."""
        return CallerTls(self.pki, as_identity, service) if self.pki else None

    def channel(
        self, address: str, service: str, *, as_identity: str = GATEWAY
    ) -> grpc.aio.Channel:
        """An asyncio channel to stack service ``service`` at ``address``, as ``as_identity``.

        Over mutual TLS (the service verified as ``<service>.webook.internal``) unless the
        stack runs plaintext. The callee's caller tables decide what ``as_identity`` may call.
        """
        tls = self.client_tls(service, as_identity=as_identity)
        return tls.aio_channel(address) if tls else grpc.aio.insecure_channel(address)


def _base_env() -> dict[str, str]:
    # Children must not inherit another process's configuration by accident.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _extra(infra: Infra, prefix: str) -> dict[str, str]:
    return {k.replace("{PREFIX}", prefix): v for k, v in infra.extra_env.items()}


def service_env(
    name: str,
    infra: Infra,
    grpc_port: int,
    peers: Mapping[str, str],
    *,
    metrics_port: int = 0,
    replica: int = 0,
) -> dict[str, str]:
    """The environment of instance ``replica`` of a service.

    In order, later winning: the stack's addresses and the service's TLS files, the
    instance's own directory (:data:`REPLICA_DIRS`), the catalog's own settings of the
    service, ``infra.extra_env``, then ``infra.overrides[name]``.
    """
    prefix = spec(name).env_prefix
    env = _base_env()
    env.update(
        {
            f"{prefix}MODE": infra.mode,
            f"{prefix}GRPC_PORT": str(grpc_port),
            f"{prefix}METRICS_PORT": str(metrics_port),
            f"{prefix}DATABASE_URL": infra.database_for(name),
            f"{prefix}REDIS_URL": infra.redis_url,
            f"{prefix}KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            f"{prefix}ETCD_ENDPOINTS": json.dumps(infra.etcd_endpoints),
            f"{prefix}PEERS": json.dumps(dict(peers)),
            **_migration_env(name, infra),
            **infra.tls_env(name, prefix),
            **infra.credentials_env(name, prefix),
            **_replica_dir(name, infra, replica),
        }
    )
    context = LocalContext(
        sms_log_file=infra.sms_log_file,
        persistent_broker=infra.persistent_broker,
        wechatpay_keys_dir=str(infra.wechatpay_keys_path()),
        wechatpay_base=infra.wechatpay_base or f"http://127.0.0.1:{WECHATPAY_DEFAULT_PORT}",
        pay_notify_url=infra.pay_notify_url or PAY_NOTIFY_DEFAULT,
    )
    env.update(local_settings(name, context))
    env.update(_extra(infra, prefix))
    env.update(infra.overrides.get(name, {}))
    return env


def _migration_env(name: str, infra: Infra) -> dict[str, str]:
    """The destination of the service's table migration, when the catalog gives it one."""
    url = infra.migration_destination_for(name)
    return {f"{spec(name).env_prefix}{MIGRATION_DESTINATION}": url} if url else {}


def _replica_dir(name: str, infra: Infra, replica: int) -> dict[str, str]:
    """The setting giving instance ``replica`` > 0 of ``name`` a directory of its own."""
    if replica == 0 or name not in REPLICA_DIRS:
        return {}
    setting, default = REPLICA_DIRS[name]
    database = sqlite_file(infra.database_for(name))
    base = database.parent if database is not None else Path(".run")
    return {f"{spec(name).env_prefix}{setting}": str(base / f"{default}-{replica}")}


def migrate(name: str, infra: Infra, log_dir: Path) -> None:
    """Apply a service's migrations (``python -m services.<name> migrate``); raises on failure.
    A service without migrations in the catalog (it keeps no SQL) has nothing to apply."""
    if not spec(name).migrations:
        return
    env = service_env(name, infra, 0, {})
    log = log_dir / f"{name}-migrate.log"
    with log.open("ab") as out:
        result = subprocess.run(
            [sys.executable, "-m", spec(name).module, "migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=120,
        )
    if result.returncode != 0:
        raise RuntimeError(f"migrations of {name} failed; see {log}")


class Migrations:
    """The migrations of several services, applied by one background process.

    One interpreter applies them one after the other (:mod:`devstack.migrate`): cheaper on
    a small machine than one process per service, since each would import the same
    libraries. Services without migrations in the catalog are done at once; a service whose
    tables are being moved has its destination migrated too, as its own ``migrate`` does. A
    launcher polls :meth:`finished` and starts each service as soon as its schema is in place.
    """

    def __init__(self, names: Iterable[str], infra: Infra, log_dir: Path) -> None:
        names = list(names)
        self.pending = [n for n in names if spec(n).migrations]
        self._done = [n for n in names if not spec(n).migrations]
        self.log_path = log_dir / "migrate.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        if not self.pending:
            return
        env = _base_env()
        for name in self.pending:
            own = service_env(name, infra, 0, {})
            for setting in ("DATABASE_URL", MIGRATION_DESTINATION):
                key = f"{spec(name).env_prefix}{setting}"
                if key in own:
                    env[key] = own[key]
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "devstack.migrate", *self.pending],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

    def finished(self, wait: float = 0.0) -> list[str]:
        """Services whose migrations completed since the last call (waits up to ``wait`` s).

        :class:`RuntimeError` if the migration process ended before migrating them all.
        """
        done, self._done = self._done, []
        proc = self._process
        if proc is None or proc.stdout is None:
            return done
        ended = False
        if select.select([proc.stdout], [], [], wait)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            self._buffer += chunk
            ended = not chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            word, _, name = line.decode().partition(" ")
            if word == "migrated" and name in self.pending:
                self.pending.remove(name)
                done.append(name)
        if ended:
            self.close()
            if self.pending:
                raise RuntimeError(
                    f"migrations of {', '.join(self.pending)} failed; see {self.log_path}"
                )
        return done

    def wait(self, timeout: float = 120.0) -> None:
        """Block until every migration is applied."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"migrations not done after {timeout:.0f}s; {self.log_path}")
            self.finished(wait=0.2)
        self.close()

    def close(self) -> None:
        """Stop the migration process if it still runs."""
        proc, self._process = self._process, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def migrate_all(names: Iterable[str], infra: Infra, log_dir: Path, timeout: float = 120) -> None:
    """Apply the migrations of every service of ``names`` (see :class:`Migrations`)."""
    Migrations(names, infra, log_dir).wait(timeout)


def service_process(
    name: str,
    infra: Infra,
    grpc_port: int,
    log_dir: Path,
    *,
    peers: Mapping[str, str] | None = None,
    replica: int = 0,
    metrics_port: int = 0,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """A (not yet started) service process listening on ``grpc_port``.

    Ready when its health service answers SERVING to the gateway's certificate (plaintext
    when the stack runs without TLS).
    """
    addr = f"127.0.0.1:{grpc_port}"
    tls = infra.client_tls(name)
    return ManagedProcess(
        name=f"{name}-{replica}",
        argv=[sys.executable, "-m", spec(name).module],
        log_path=log_dir / f"{name}-{replica}.log",
        ready=lambda: grpc_serving(addr, tls),
        env=service_env(
            name, infra, grpc_port, peers or {}, metrics_port=metrics_port, replica=replica
        ),
        die_with_parent=die_with_parent,
    )


def wechat_emulator_process(
    port: int, log_dir: Path, *, die_with_parent: bool = False
) -> ManagedProcess:
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
        die_with_parent=die_with_parent,
    )


def wechatpay_emulator_process(
    port: int,
    keys_dir: Path,
    log_dir: Path,
    *,
    retry_scale: float = 1.0,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """A (not yet started) WeChat Pay emulator on ``port`` with the keys in ``keys_dir``.

    The keys are made here, before the process and the payment service read them, so that
    two processes never make them at once. ``retry_scale`` multiplies the pauses between
    notification attempts (WeChat Pay's schedule at 1).
    """
    ensure_keys(keys_dir)
    return ManagedProcess(
        name="wechatpay-emulator",
        argv=[
            sys.executable,
            "-m",
            "devstack.wechatpay_emulator",
            "--port",
            str(port),
            "--keys-dir",
            str(keys_dir),
            "--retry-scale",
            str(retry_scale),
        ],
        log_path=log_dir / "wechatpay-emulator.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        env=_base_env(),
        die_with_parent=die_with_parent,
    )


def gateway_process(
    infra: Infra,
    port: int,
    peers: Mapping[str, str],
    log_dir: Path,
    *,
    wechat_base: str = "",
    die_with_parent: bool = False,
) -> ManagedProcess:
    """A (not yet started) gateway process on ``port``.

    ``wechat_base``: the base URL of a WeChat emulator to log in with (both its authorize
    page and its API), the callback being this gateway's ``/oauth2/wechat/callback``.
    """
    env = _base_env()
    env.update(
        {
            f"{GATEWAY_PREFIX}MODE": infra.mode,
            f"{GATEWAY_PREFIX}PORT": str(port),
            f"{GATEWAY_PREFIX}REDIS_URL": infra.redis_url,
            f"{GATEWAY_PREFIX}PEERS": json.dumps(dict(peers)),
            f"{GATEWAY_PREFIX}ETCD_ENDPOINTS": json.dumps(infra.etcd_endpoints),
            f"{GATEWAY_PREFIX}KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            **infra.tls_env(GATEWAY, GATEWAY_PREFIX),
            **infra.credentials_env(GATEWAY, GATEWAY_PREFIX),
        }
    )
    if wechat_base:
        env.update(
            {
                f"{GATEWAY_PREFIX}WECHAT_AUTHORIZE_BASE": wechat_base,
                f"{GATEWAY_PREFIX}WECHAT_API_BASE": wechat_base,
                f"{GATEWAY_PREFIX}WECHAT_APP_ID": DEV_APP_ID,
                f"{GATEWAY_PREFIX}WECHAT_APP_SECRET": DEV_APP_SECRET,
                f"{GATEWAY_PREFIX}WECHAT_REDIRECT_URI": (
                    f"http://127.0.0.1:{port}/oauth2/wechat/callback"
                ),
            }
        )
    env.update(_extra(infra, GATEWAY_PREFIX))
    env.update(infra.overrides.get("gateway", {}))
    return ManagedProcess(
        name="gateway",
        argv=[sys.executable, "-m", "gateway"],
        log_path=log_dir / "gateway.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        env=env,
        die_with_parent=die_with_parent,
    )


def start_services(
    names: Iterable[str],
    infra: Infra,
    log_dir: Path,
    instance: Callable[[str, int], ManagedProcess],
    *,
    replicas: Mapping[str, int] | None = None,
    also: Sequence[ManagedProcess] = (),
    timeout: float = 60.0,
) -> dict[str, list[ManagedProcess]]:
    """Migrate and start services in parallel (and ``also``), waiting until all are ready.

    ``instance(name, replica)`` builds each (not yet started) instance, e.g. with
    :func:`service_process`. Each service starts as soon as its own migrations are applied;
    the processes of ``also`` (the gateway, say) start at once. On failure every process
    started here is stopped and the error raised.
    """
    names = list(names)
    counts = {name: (replicas or {}).get(name, 1) for name in names}
    instances: dict[str, list[ManagedProcess]] = {name: [] for name in names}
    started: list[ManagedProcess] = [proc.spawn() for proc in also]
    migrations = Migrations(names, infra, log_dir)

    def spawn(ready_to_start: list[str]) -> None:
        for name in ready_to_start:
            for replica in range(counts[name]):
                proc = instance(name, replica).spawn()
                instances[name].append(proc)
                started.append(proc)

    try:
        deadline = time.monotonic() + timeout
        spawn(migrations.finished())  # those without migrations
        while migrations.pending:
            spawn(migrations.finished(wait=0.05))
            if time.monotonic() > deadline:
                raise InfraError(f"migrations not done after {timeout:.0f}s; see {log_dir}")
        wait_ready(started, max(1.0, deadline - time.monotonic()))
    except BaseException:
        migrations.close()
        stop_all(started, grace=5)
        raise
    migrations.close()
    return instances
