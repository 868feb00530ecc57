"""Benchmark of the read path: ``GET /articles/pub/:id`` on the real stack against its floor.

Run ``python -m bench.read_path``. In a temporary directory it starts etcd, the tansu
broker and Redis on free ports, migrates SQLite databases, and starts the real user,
article and interactive services and the gateway (one uvicorn worker, discovery through
etcd, per-IP rate limits off). Through the gateway it signs up and logs in an author, who
publishes one article, and a reader, who then reads it over and over.

The **floor** is measured the same way in the same run: :mod:`bench._floor_app`, a minimal
FastAPI app on one uvicorn worker making the same two concurrent unary gRPC calls per
request over plain ``grpc.aio`` channels to :mod:`bench._noop_services` (trivial servicers
answering a fixed article and fixed counts), returning the same fields.

With ``--mtls`` every gRPC hop of both runs over mutual TLS, as in production: the stack with
the certificates devstack issues, the floor app and no-op services with the same CA and the
gateway's and services' own certificates (:mod:`bench.read_path_mtls` runs it so).

With ``--split-floor`` the no-op services run in two processes, one per service, as the real
article and interactive services do: each process then pays its own gRPC poller thread and
event-loop wake-ups. It shows how much of the services' gap to the floor is that topology;
the goal stays measured against the one-process floor (the ratio is printed without a goal).

Load: ``wrk`` (:mod:`bench._wrk`; the run stops at once, naming the install command, if it
is missing) with ``CONNECTIONS`` keep-alive HTTP/1.1 connections, ``WARMUP_SECONDS`` of
warm-up then a ``MEASURE_SECONDS`` window, floor and ours in alternating rounds; medians
are reported, since the 2-core machine is noisy. For every window the CPU time of each
server process (``psutil``) is divided by the requests served: the per-process CPU table
shows what limits the real stack, wrk's own share apart. Then each part of the real stack
is set against its counterpart in the floor (gateway vs floor app, the services vs the
no-op services, the infrastructure vs nothing). Goal: ours / floor >= ``GOAL``; the exit
code is 1 if it is missed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from bench._noop_services import CONTENT, TITLE
from bench._report import result
from bench._wrk import Window, load, wrk_binary
from devstack.infra import (
    ManagedProcess,
    etcd_process,
    free_port,
    kafka_process,
    port_in_use,
    redis_process,
)
from devstack.suite import Infra, gateway_process, http_ok, migrate, service_process
from devstack.tls import stack_pki
from kit.security.pki import Pki

CONNECTIONS = 32
ROUNDS = 3
FIRST_WARMUP_SECONDS = 3.0
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 5.0
GOAL = 0.8
# With every hop over mutual TLS (floor included).
MTLS_GOAL = 0.75
USER_AGENT = "webook-bench/1.0"
PASSWORD = "hello#world123"
REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_SERVICES = ("user", "article", "interactive")
# Parts of the real stack and the floor processes doing the same job.
PARTS = (
    ("gateway vs floor app", ("gateway",), ("floor-app",)),
    (
        "article + interactive vs no-op services",
        ("article", "interactive"),
        ("noop-services", "noop-article", "noop-interactive"),
    ),
    ("user vs nothing", ("user",), ()),
    ("redis + kafka + etcd vs nothing", ("redis", "kafka", "etcd"), ()),
)


@dataclass
class Target:
    """What to load: a URL, its headers, and the processes whose CPU to account."""

    name: str
    url: str
    headers: dict[str, str]
    processes: dict[str, int]
    windows: list[Window] = field(default_factory=list)


def measure(target: Target, warmup: float) -> Window:
    """One wrk window against ``target``, kept in ``target.windows``."""
    window = load(
        target.url,
        headers=target.headers,
        processes=target.processes,
        connections=CONNECTIONS,
        seconds=MEASURE_SECONDS,
        warmup=warmup,
    )
    target.windows.append(window)
    return window


# -- the real stack ---------------------------------------------------------------------


async def login(http: httpx.AsyncClient) -> dict[str, str]:
    """Sign up and log in a new user through the gateway; the headers of its requests."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    signup = await http.post("/users/signup", json=body)
    if signup.json().get("code") != 0:
        raise RuntimeError(f"signup failed: {signup.text}")
    login = await http.post("/users/login", json={"email": email, "password": PASSWORD})
    if "x-jwt-token" not in login.headers:
        raise RuntimeError(f"login failed: {login.status_code} {login.text}")
    return {"Authorization": f"Bearer {login.headers['x-jwt-token']}", "User-Agent": USER_AGENT}


async def prepare(base_url: str) -> tuple[int, dict[str, str]]:
    """An article published by one user, and the headers of another (the reader)."""
    async with httpx.AsyncClient(
        base_url=base_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as http:
        author, reader = await login(http), await login(http)
        published = await http.post(
            "/articles/publish", json={"title": TITLE, "content": CONTENT}, headers=author
        )
        article_id = published.json().get("data")
        if not isinstance(article_id, int) or not article_id:
            raise RuntimeError(f"publish failed: {published.text}")
        read = await http.get(f"/articles/pub/{article_id}", headers=reader)
        if read.status_code != 200 or read.json()["data"]["title"] != TITLE:
            raise RuntimeError(f"reading the article failed: {read.status_code} {read.text}")
        return article_id, reader


def start_infra(scratch: Path, running: ExitStack, pki: Pki | None) -> tuple[Infra, dict[str, int]]:
    """etcd, the broker and Redis on free ports; their :class:`Infra` and pids by name.

    ``pki``: the certificates of a stack over mutual TLS; ``None`` runs it in plaintext.
    """
    logs = scratch / "logs"
    logs.mkdir(exist_ok=True)
    etcd_port, kafka_port, redis_port = free_port(), free_port(), free_port()
    infra_procs = {
        "etcd": etcd_process(scratch / "etcd-data", etcd_port, free_port(), logs),
        "kafka": kafka_process(kafka_port, logs),
        "redis": redis_process(redis_port, logs),
    }
    for proc in infra_procs.values():
        start_process(proc, running)
    infra = Infra(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        etcd_endpoints=[f"127.0.0.1:{etcd_port}"],
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        database_url=f"sqlite+aiosqlite:///{scratch}",
        mode="test",
        extra_env={
            "{PREFIX}BCRYPT_COST": "4",
            "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
            "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            # Every request comes from 127.0.0.1: per-IP limits would throttle the load.
            "WEBOOK_GATEWAY_EDGE": json.dumps({"rate_limits": []}),
        },
        pki=pki,
    )
    return infra, {name: pid_of(proc) for name, proc in infra_procs.items()}


def start_stack(scratch: Path, running: ExitStack, pki: Pki | None) -> tuple[str, dict[str, int]]:
    """Infrastructure, services and gateway; returns the gateway URL and pids by name."""
    infra, pids = start_infra(scratch, running, pki)
    logs = scratch / "logs"
    for service in STACK_SERVICES:
        migrate(service, infra, logs)
    procs = {name: service_process(name, infra, free_port(), logs) for name in STACK_SERVICES}
    gateway_port = free_port()
    # No static peers: the gateway finds the services through etcd, as in production.
    procs["gateway"] = gateway_process(infra, gateway_port, {}, logs)
    for proc in procs.values():
        start_process(proc, running)
    pids.update({name: pid_of(proc) for name, proc in procs.items()})
    return f"http://127.0.0.1:{gateway_port}", pids


def start_floor(
    scratch: Path, running: ExitStack, pki: Pki | None, *, split: bool = False
) -> tuple[str, dict[str, int]]:
    """The no-op services and the floor app; returns the floor URL and pids by name.

    ``split``: one no-op process per service instead of one for both.
    """
    article_port, interactive_port, app_port = free_port(), free_port(), free_port()
    tls_args = [f"--pki={pki.directory}"] if pki is not None else []
    ports = {"noop-article": (article_port,), "noop-interactive": (interactive_port,)}
    noops = ports if split else {"noop-services": (article_port, interactive_port)}
    pids: dict[str, int] = {}
    for name, served in noops.items():
        flags = [
            f"--{service}-port={port}"
            for service, port in (("article", article_port), ("interactive", interactive_port))
            if port in served
        ]
        noop = ManagedProcess(
            f"bench-{name}",
            [sys.executable, "-m", "bench._noop_services", *flags, *tls_args],
            scratch / "logs" / f"{name}.log",
            ready=partial(_listening, served),
            cwd=REPO_ROOT,
        )
        start_process(noop, running)
        pids[name] = pid_of(noop)
    app = ManagedProcess(
        "bench-floor-app",
        [
            sys.executable,
            "-m",
            "bench._floor_app",
            f"--port={app_port}",
            f"--article=127.0.0.1:{article_port}",
            f"--interactive=127.0.0.1:{interactive_port}",
            *tls_args,
        ],
        scratch / "logs" / "floor-app.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{app_port}/healthz"),
        cwd=REPO_ROOT,
    )
    start_process(app, running)
    return f"http://127.0.0.1:{app_port}", {"floor-app": pid_of(app), **pids}


def _listening(ports: tuple[int, ...]) -> bool:
    return all(port_in_use(port) for port in ports)


def start_process(proc: ManagedProcess, running: ExitStack) -> None:
    """Start ``proc`` and have ``running`` stop it."""
    # Registered before start(): a process that fails to become ready is stopped too.
    running.callback(proc.stop)
    proc.start(timeout=60)


def pid_of(proc: ManagedProcess) -> int:
    """The pid of a started process."""
    if proc.pid is None:
        raise RuntimeError(f"{proc.name} is not running")
    return proc.pid


# -- report -----------------------------------------------------------------------------


def _median(values: Iterator[float] | list[float]) -> float:
    return statistics.median(list(values))


def cpu_table(target: Target) -> dict[str, float]:
    """Median CPU ms per request of each process over ``target``'s windows."""
    per_window = [w.cpu_ms_per_request() for w in target.windows]
    return {name: _median(cpu[name] for cpu in per_window) for name in per_window[0]}


def print_cpu_table(target: Target, order: list[str]) -> dict[str, float]:
    """Print and return the median CPU ms per request of each server process."""
    table = cpu_table(target)
    print(f"CPU per request, {target.name} (median over {len(target.windows)} windows):")
    for name in order:
        print(f"  {name:<16} {table[name]:6.3f} ms")
    print(f"  {'total':<16} {sum(table[name] for name in order):6.3f} ms")
    loader = _median(w.loader_ms_per_request for w in target.windows)
    print(f"  {'(wrk)':<16} {loader:6.3f} ms  load generator, not in the total")
    return table


def print_excess(floor: dict[str, float], ours: dict[str, float]) -> None:
    """Each part of the real stack against its counterpart in the floor, CPU ms per request."""
    print("CPU per request above the floor (ours - floor):")
    for part, our_names, floor_names in PARTS:
        mine = sum(ours[name] for name in our_names)
        theirs = sum(floor.get(name, 0.0) for name in floor_names)
        print(
            f"  {part:<40} {mine:6.3f} ms vs {theirs:6.3f} ms: {mine - theirs:+6.3f} ms"
            + (f" (x{mine / theirs:.2f})" if theirs else "")
        )


def summary(floor: Target, ours: Target, pick: Callable[[Window], float]) -> float:
    """Median of ``pick`` over the windows of ``ours`` divided by that of ``floor``."""
    return _median(pick(w) for w in ours.windows) / _median(pick(w) for w in floor.windows)


def run(floor: Target, ours: Target, *, mtls: bool = False, split: bool = False) -> float:
    """Alternating rounds; prints every window and the summary; returns the ratio.

    ``split``: the floor's no-op services run in two processes (the ratio has no goal).
    """
    print(
        f"load: wrk, {CONNECTIONS} keep-alive connections, {WARMUP_SECONDS:.0f}s warm-up "
        f"({FIRST_WARMUP_SECONDS:.0f}s in round 1), {MEASURE_SECONDS:.0f}s measured, "
        f"{ROUNDS} rounds"
    )
    for round_no in range(ROUNDS):
        warmup = FIRST_WARMUP_SECONDS if round_no == 0 else WARMUP_SECONDS
        # Alternate which goes first so that drifting background load cancels out.
        order = (floor, ours) if round_no % 2 == 0 else (ours, floor)
        for target in order:
            window = measure(target, warmup)
            print(
                f"round {round_no + 1}: {target.name:<5} {window.rate:7.0f} req/s, "
                f"p50 {window.p50_ms:6.1f} ms, p99 {window.p99_ms:6.1f} ms"
            )
    for target in (floor, ours):
        print(
            f"{target.name:<5} median {_median(w.rate for w in target.windows):7.0f} req/s, "
            f"p50 {_median(w.p50_ms for w in target.windows):6.1f} ms, "
            f"p99 {_median(w.p99_ms for w in target.windows):6.1f} ms"
        )
    ratio = summary(floor, ours, lambda w: w.rate)
    goal = MTLS_GOAL if mtls else GOAL
    transport = ", mTLS" if mtls else ""
    topology = ", no-op services in two processes" if split else ""
    result(
        f"GET /articles/pub/:id vs two-hop floor app{topology}, {CONNECTIONS} connections "
        f"(wrk{transport})",
        f"{_median(w.rate for w in ours.windows):.0f} req/s",
        f"{_median(w.rate for w in floor.windows):.0f} req/s",
        ratio,
        "" if split else f">= {goal}",
        None if split else ratio >= goal,
    )
    verdict = "no goal" if split else f"goal >= {goal}: {'met' if ratio >= goal else 'NOT met'}"
    print(f"ours / floor: {ratio:.2f} (medians of {ROUNDS} rounds; {verdict})")
    floor_cpu = print_cpu_table(floor, list(floor.processes))
    ours_cpu = print_cpu_table(
        ours, ["gateway", "article", "interactive", "user", "redis", "kafka", "etcd"]
    )
    print_excess(floor_cpu, ours_cpu)
    return ratio


def main(argv: list[str] | None = None) -> int:
    """Start everything, measure, print, stop everything."""
    args = sys.argv[1:] if argv is None else argv
    mtls, split = "--mtls" in args, "--split-floor" in args
    wrk_binary()  # before starting anything: without wrk there is nothing to measure
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as running:
        scratch = Path(tmp)
        pki = stack_pki(scratch) if mtls else None
        gateway_url, stack_pids = start_stack(scratch, running, pki)
        article_id, reader = asyncio.run(prepare(gateway_url))
        floor_url, floor_pids = start_floor(scratch, running, pki, split=split)
        print(
            f"stack up and article {article_id} published in {time.monotonic() - started:.1f}s"
            f" ({'mutual TLS' if mtls else 'plaintext'} gRPC)"
        )
        path = f"/articles/pub/{article_id}"
        floor = Target("floor", floor_url + path, {"User-Agent": USER_AGENT}, floor_pids)
        ours = Target("ours", gateway_url + path, reader, stack_pids)
        ratio = run(floor, ours, mtls=mtls, split=split)
    print(f"total {time.monotonic() - started:.1f}s")
    return 0 if split or ratio >= (MTLS_GOAL if mtls else GOAL) else 1


if __name__ == "__main__":
    sys.exit(main())
