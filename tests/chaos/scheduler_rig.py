"""Scheduler processes on one MariaDB database, jobs that POST to a fencing server, faults
on the instance holding a job, and the checks on what the fencing server saw.

Shared by ``tests/chaos/test_scheduler_faults.py`` (rounds of SIGKILL and SIGSTOP, several
hundred runs) and ``tests/chaos/test_scheduler_sigkill.py`` (one SIGKILL).

- :class:`FencingServer` is the guarded resource and the **fencing log**: an HTTP server in
  a thread of the test process. Per job it accepts a request whose token is at least the
  highest it accepted, holds it for a short "work" time, and answers 409 to an older token;
  every request is kept (token, instance, start, end, accepted or refused).
- :class:`SchedulerCluster`: ``python -m services.scheduler serve`` processes, plaintext and
  without a registry, each with its own ``WEBOOK_SCHEDULER_INSTANCE_ID`` (``s<slot>.<n>``:
  a restarted slot gets a new id, so the log tells incarnations apart).
- :class:`SchedulerDatabase`: the test's view of the jobs and executions tables.
- :func:`seize_holder`: signal the instance holding a job (SIGKILL or SIGSTOP) and return
  the :class:`Fault` (its token and the end of its last renewed lease).
- :class:`StallMonitor`: the environment's own stalls, measured by a probe thread (a write
  round trip to the database, and its own sleep); bounds on time are extended by the stalled
  time they contain, since a scheduler can only be as timely as its database.
- :func:`stall_database`: the database stalls every write for a while (a global read lock).
- :func:`analyse`: the figures and the violations the tests assert on.

Times are wall-clock epoch milliseconds everywhere (the schedulers' leases use the same
clock of the same machine). Every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.infra import ManagedProcess, free_port
from devstack.suite import grpc_serving
from kit.sql import create_engine, scratch_database, session_factory
from kit.tests.process_env import process_env
from services.scheduler.domain import Execution
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.repository import SqlUnitOfWork
from services.scheduler.repository.dao import JobRow
from services.scheduler.service import JobService

PREFIX: Final = "WEBOOK_SCHEDULER_"
# The executor contract's headers, written out rather than imported from the scheduler:
# the fencing server is the callee, and a renamed header must fail here.
TOKEN_HEADER: Final = "X-Webook-Fencing-Token"
JOB_HEADER: Final = "X-Webook-Job"
INSTANCE_HEADER: Final = "X-Webook-Scheduler-Instance"
TAKEOVER_MESSAGE: Final = "job taken over from an expired lease"
# Bounds a hang on a loaded machine; every wait is on a condition.
WAIT_S: Final = 60.0
# Between polls of a condition; a holder is looked for more often (see seize_holder).
POLL_S: Final = 0.05
SEIZE_POLL_S: Final = 0.005


def now_ms() -> float:
    """The wall clock in epoch milliseconds (the schedulers' clock)."""
    return time.time() * 1000


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, within_s: float = WAIT_S
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_S)


@dataclass(frozen=True, slots=True)
class Timing:
    """The schedulers' timing settings, the jobs' period and work time, and the bounds.

    ``slack_s`` is what a loaded 2-core machine may add to a bound beyond the ticks: the
    taking instance's scheduling delay, its take, execution record and POST (round trips to
    MariaDB and to the fencing server), and the fencing server thread's own delay. A
    takeover's request arrived 64-112 ms after the lease ended on an idle machine, up to
    124 ms with two busy processes on its two cores (a tick included); 1 s
    leaves room for a loaded machine yet stays below a lease, so that a takeover one
    lease late (a renewal or an expiry misread) still fails the bound.
    """

    lease_s: float = 2.0
    renew_s: float = 0.5
    tick_s: float = 0.1
    every_ms: int = 200
    work_s: float = 0.08
    slack_s: float = 1.0
    # What one run may take beyond interval + work + tick when nothing fails (the release,
    # the next take, the execution record, the POST), for the lower bound on the run count.
    run_overhead_s: float = 0.3

    @property
    def gap_bound_ms(self) -> float:
        """Longest a job may wait between the end of a run and the next one's request.

        The worst case is a holder killed right after its take: the job was due
        ``every_ms`` after the previous run, taken at a tick, its lease runs out a lease
        after that take, and the takeover comes at the next tick after that.
        """
        return self.every_ms + (self.lease_s + 2 * self.tick_s + self.slack_s) * 1000

    @property
    def takeover_bound_ms(self) -> float:
        """Longest from a dead (or frozen) holder's lease end to the takeover's request: the
        next tick of another instance, and the slack."""
        return (self.tick_s + self.slack_s) * 1000

    @property
    def cycle_bound_ms(self) -> float:
        """Longest one fault-free run cycle may take (start to next start)."""
        return self.every_ms + (self.work_s + self.tick_s + self.run_overhead_s) * 1000

    def settings(self) -> dict[str, str]:
        """The scheduler settings of these timings."""
        return {
            "lease_seconds": str(self.lease_s),
            "renew_seconds": str(self.renew_s),
            "tick_seconds": str(self.tick_s),
        }


# The fencing server ---------------------------------------------------------------------


@dataclass(slots=True)
class Attempt:
    """One request the fencing server received."""

    job: str
    token: int
    instance: str
    start_ms: float
    accepted: bool
    # The highest token accepted for the job before this request.
    highest: int
    end_ms: float | None = None


class FencingServer:
    """The guarded resource: accepts a job's request only with a token at least the highest
    accepted for that job, holds it ``work_s``, answers 409 to an older token.

    A Starlette app run by uvicorn in a thread of its own, so the test's event loop (its
    database polls, its signals) never delays the log's timestamps. Equal tokens pass: the
    executor's retries of one run carry its token. A newer token is accepted even while an
    older one's request is still held: overlapping runs are not refused, they show in the
    log (:func:`analyse`).
    """

    def __init__(self, work_s: float) -> None:
        self.work_s = work_s
        self.port = free_port()
        self._lock = threading.Lock()
        self._highest: dict[str, int] = {}
        self._attempts: list[Attempt] = []
        self._malformed: list[str] = []
        app = Starlette(routes=[Route("/run", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fencing", daemon=True)

    @property
    def url(self) -> str:
        """Where the jobs POST."""
        return f"http://127.0.0.1:{self.port}/run"

    def start(self) -> None:
        """Serve; return once the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fencing server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (requests in progress end first)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _handle(self, request: Request) -> JSONResponse:
        try:
            job = request.headers[JOB_HEADER]
            token = int(request.headers[TOKEN_HEADER])
            instance = request.headers[INSTANCE_HEADER]
            body = await request.json()
        except (KeyError, ValueError) as exc:
            return self._refuse_malformed(f"{type(exc).__name__}: {exc}")
        if not isinstance(body, dict) or (body.get("job"), body.get("token")) != (job, token):
            return self._refuse_malformed(f"body does not match the headers: {body!r}")
        if body.get("instance") != instance:
            return self._refuse_malformed(f"body names another instance: {body!r}")
        with self._lock:
            highest = self._highest.get(job, 0)
            attempt = Attempt(job, token, instance, now_ms(), token >= highest, highest)
            self._attempts.append(attempt)
            if not attempt.accepted:
                attempt.end_ms = attempt.start_ms
                return JSONResponse({"error": "stale fencing token", "highest": highest}, 409)
            self._highest[job] = token
        try:
            await asyncio.sleep(self.work_s)
        finally:
            with self._lock:
                attempt.end_ms = now_ms()
        return JSONResponse({"accepted": token})

    def _refuse_malformed(self, why: str) -> JSONResponse:
        with self._lock:
            self._malformed.append(why)
        return JSONResponse({"error": why}, 400)

    def attempts(self, job: str | None = None) -> list[Attempt]:
        """A copy of the requests received (of ``job``), in arrival order."""
        with self._lock:
            return [replace(a) for a in self._attempts if job is None or a.job == job]

    def malformed(self) -> list[str]:
        """Requests that did not follow the executor's contract."""
        with self._lock:
            return list(self._malformed)

    def accepted_runs(self) -> int:
        """Distinct runs (job and token) accepted so far."""
        with self._lock:
            return len({(a.job, a.token) for a in self._attempts if a.accepted})

    def seen(self, job: str, token: int) -> bool:
        """Whether a request of ``job`` with ``token`` arrived."""
        with self._lock:
            return any(a.job == job and a.token == token for a in self._attempts)

    def first_accepted_after(self, job: str, token: int) -> Attempt | None:
        """The first accepted request of ``job`` with a token above ``token``."""
        with self._lock:
            found = next(
                (a for a in self._attempts if a.job == job and a.accepted and a.token > token),
                None,
            )
            return None if found is None else replace(found)

    def in_progress(self) -> int:
        """Accepted requests not answered yet."""
        with self._lock:
            return sum(1 for a in self._attempts if a.end_ms is None)


# Stalls of the environment ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stall:
    """A time the environment did not answer: ``database`` (a write round trip took over
    :data:`STALL_MS`) or ``process`` (the test process's probe thread overslept as long)."""

    kind: str
    start_ms: float
    end_ms: float

    @property
    def ms(self) -> float:
        """How long it lasted."""
        return self.end_ms - self.start_ms


# A write round trip on an idle machine takes a few ms, under load tens of ms.
STALL_MS: Final = 300.0
PROBE_EVERY_S: Final = 0.05


class StallMonitor:
    """Measures the environment's stalls while the schedulers run, from a thread of its own.

    Every :data:`PROBE_EVERY_S` the thread commits a one-row ``UPDATE`` on the test's
    database (the path a take, renewal or release takes: row lock, redo log, commit) and
    notes a round trip over :data:`STALL_MS` as a ``database`` stall; a sleep that overran
    by as much is a ``process`` stall of the test process, where the fencing server runs.
    A scheduler cannot take, renew or release faster than its database answers, so the
    analysis extends its bounds on gaps and takeovers by the stalled time they contain;
    nothing excuses an overlap or an out-of-order token except a stall of the fencing
    server's own process.
    """

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._lock = threading.Lock()
        self._stalls: list[Stall] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="stall-monitor", daemon=True)

    def start(self) -> None:
        """Start probing; return once the first probe answered."""
        self._thread.start()
        if not self._ready.wait(WAIT_S) or self._error is not None:
            raise RuntimeError(f"the stall monitor did not start: {self._error!r}")

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()
        self._thread.join(timeout=WAIT_S)

    def stalls(self) -> list[Stall]:
        """The stalls seen so far, in start order."""
        with self._lock:
            return sorted(self._stalls, key=lambda st: st.start_ms)

    def _note(self, kind: str, start_ms: float, end_ms: float) -> None:
        with self._lock:
            self._stalls.append(Stall(kind, start_ms, end_ms))

    def _main(self) -> None:
        try:
            asyncio.run(self._probe())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _probe(self) -> None:
        engine = create_engine(self._database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("CREATE TABLE stall_probe (id INT PRIMARY KEY, n BIGINT NOT NULL)")
                )
                await conn.execute(text("INSERT INTO stall_probe VALUES (1, 0)"))
            self._ready.set()
            bump = text("UPDATE stall_probe SET n = n + 1 WHERE id = 1")
            while not self._stop.is_set():
                sent = now_ms()
                async with engine.begin() as conn:
                    await conn.execute(bump)
                answered = now_ms()
                if answered - sent > STALL_MS:
                    self._note("database", sent, answered)
                await asyncio.sleep(PROBE_EVERY_S)
                woke = now_ms()
                if woke - answered - PROBE_EVERY_S * 1000 > STALL_MS:
                    self._note("process", answered, woke)
        finally:
            await engine.dispose()


def stalled_ms(stalls: Iterable[Stall], start_ms: float, end_ms: float) -> float:
    """How much of ``[start_ms, end_ms]`` the stalls cover (overlapping stalls once)."""
    spans = sorted(
        (max(st.start_ms, start_ms), min(st.end_ms, end_ms))
        for st in stalls
        if st.end_ms > start_ms and st.start_ms < end_ms
    )
    total, reach = 0.0, start_ms
    for begin, end in spans:
        begin = max(begin, reach)
        if end > begin:
            total += end - begin
            reach = end
    return total


# The database -----------------------------------------------------------------------------


def fresh_database() -> contextlib.AbstractAsyncContextManager[str]:
    """A database created on the test MariaDB server for this test, dropped after."""
    return scratch_database(prefix="webook_test")


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A job's lease as the jobs table shows it."""

    job_id: int
    name: str
    holder: str | None
    version: int
    lease_until_ms: int


class SchedulerDatabase:
    """The jobs and executions tables, read and written as the test needs."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._engine = create_engine(database_url)
        self._sessions = session_factory(self._engine)
        self.jobs = JobService(self._units, ExecutorRegistry())

    def _units(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions)

    async def close(self) -> None:
        """Close the pool."""
        await self._engine.dispose()

    async def add_http_job(self, name: str, url: str, every_ms: int) -> None:
        """An active ``http`` job run every ``every_ms`` that POSTs to ``url``."""
        await self.jobs.add(
            name,
            f"@every {every_ms}ms",
            executor_kind="http",
            # Longer than any run under load: a run's retries would come only from
            # connection errors, which a healthy fencing server never causes.
            executor_config={"url": url, "timeout_s": 30, "retries": 2, "body": {"job": name}},
        )

    async def leases(self) -> list[LeaseRow]:
        """Every job's lease."""
        columns = (JobRow.id, JobRow.name, JobRow.holder, JobRow.version, JobRow.lease_until_ms)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*columns).order_by(JobRow.id))).all()
        return [LeaseRow(*row) for row in rows]

    async def lease(self, name: str) -> LeaseRow:
        """``name``'s lease."""
        return next(row for row in await self.leases() if row.name == name)

    async def executions(self, name: str) -> list[Execution]:
        """``name``'s runs as recorded, oldest first."""
        job = await self.jobs.get(name)
        async with self._units() as uow:
            return sorted(await uow.jobs.executions(job.id, limit=1_000_000), key=lambda e: e.id)

    async def job_rows_locked(self) -> bool:
        """Whether a transaction holds a lock on a job's row for over a second.

        A live instance holds one for milliseconds; an instance frozen inside its take,
        renewal or release holds it until it resumes. Meanwhile every other instance's take
        of that job waits for the lock (up to ``innodb_lock_wait_timeout``) instead of
        taking over, and its whole tick loop with it: no job runs at all.
        """
        probe = text(
            "SET STATEMENT innodb_lock_wait_timeout = 1 FOR "
            "SELECT id FROM scheduler_jobs FOR UPDATE"
        )
        async with self._engine.connect() as conn:
            try:
                await conn.execute(probe)
            except OperationalError as exc:
                if "Lock wait timeout" not in str(exc):
                    raise
                return True
            finally:
                await conn.rollback()
        return False


async def migrate(database_url: str, log_dir: Path) -> None:
    """``python -m services.scheduler migrate`` on ``database_url``."""
    log = log_dir / "migrate.log"

    def run() -> int:
        log_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            return subprocess.run(
                [sys.executable, "-m", "services.scheduler", "migrate"],
                env=process_env(PREFIX, database_url=database_url),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
                timeout=WAIT_S * 2,
            ).returncode

    status = await asyncio.to_thread(run)
    assert status == 0, f"migrations failed:\n{log.read_text(errors='replace')[-3000:]}"


# The processes ----------------------------------------------------------------------------


@dataclass
class Instance:
    """One incarnation of a scheduler process."""

    slot: int
    generation: int
    process: ManagedProcess
    metrics_port: int
    frozen: bool = False

    @property
    def id(self) -> str:
        """Its ``WEBOOK_SCHEDULER_INSTANCE_ID``."""
        return f"s{self.slot}.{self.generation}"

    @property
    def running(self) -> bool:
        """Alive and not frozen."""
        return not self.frozen and self.process.alive()

    def log_records(self) -> list[dict[str, Any]]:
        """Its JSON log lines."""
        records = []
        for line in self.process.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records


class SchedulerCluster:
    """Scheduler processes on one database: started, killed, frozen, thawed, restarted."""

    def __init__(self, database_url: str, log_dir: Path, timing: Timing) -> None:
        self._database_url = database_url
        self._log_dir = log_dir
        self._timing = timing
        self.instances: list[Instance] = []

    def _spawn(self, slot: int) -> Instance:
        generation = sum(1 for i in self.instances if i.slot == slot)
        grpc_port, metrics_port = free_port(), free_port()
        instance_id = f"s{slot}.{generation}"
        env = process_env(
            PREFIX,
            database_url=self._database_url,
            instance_id=instance_id,
            grpc_port=str(grpc_port),
            metrics_port=str(metrics_port),
            shutdown_grace="1",
            **self._timing.settings(),
        )
        env["PYTHONUNBUFFERED"] = "1"
        address = f"127.0.0.1:{grpc_port}"
        process = ManagedProcess(
            name=instance_id,
            argv=[sys.executable, "-m", "services.scheduler", "serve"],
            log_path=self._log_dir / f"{instance_id}.log",
            ready=lambda: grpc_serving(address),
            env=env,
            die_with_parent=True,
        )
        instance = Instance(slot, generation, process, metrics_port)
        self.instances.append(instance)
        process.spawn()
        return instance

    async def _ready(self, started: Sequence[Instance]) -> None:
        async def all_ready() -> bool:
            checks = [asyncio.to_thread(i.process.check_ready) for i in started]
            return all(await asyncio.gather(*checks))

        await until(all_ready, f"{', '.join(i.id for i in started)} to serve")

    async def start(self, size: int) -> None:
        """Start ``size`` instances and wait until all serve."""
        await self._ready([self._spawn(slot) for slot in range(1, size + 1)])

    async def restart(self, instance: Instance) -> Instance:
        """A new incarnation of ``instance``'s slot (which must be dead), serving."""
        assert not instance.process.alive(), f"{instance.id} still runs"
        started = self._spawn(instance.slot)
        await self._ready([started])
        return started

    def by_id(self, instance_id: str | None) -> Instance | None:
        """The incarnation called ``instance_id``."""
        return next((i for i in self.instances if i.id == instance_id), None)

    def running(self) -> list[Instance]:
        """Instances alive and not frozen."""
        return [i for i in self.instances if i.running]

    def kill(self, instance: Instance) -> None:
        """SIGKILL, and wait until it is gone."""
        instance.process.kill()

    def freeze(self, instance: Instance) -> None:
        """SIGSTOP."""
        instance.process.signal(signal.SIGSTOP)
        instance.frozen = True

    def thaw(self, instance: Instance) -> None:
        """SIGCONT."""
        instance.process.signal(signal.SIGCONT)
        instance.frozen = False

    def close(self) -> None:
        """Stop every process: frozen ones are resumed first; SIGKILL after a short grace."""
        for instance in self.instances:
            if instance.frozen:
                self.thaw(instance)
        for instance in self.instances:
            instance.process.terminate()
        deadline = time.monotonic() + 5
        for instance in self.instances:
            instance.process.wait_stopped(deadline)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every instance's log (for a failure's message)."""
        parts = []
        for instance in self.instances:
            path = instance.process.log_path
            tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {instance.id} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    async def metric(self, instance: Instance, name: str, **labels: str) -> float:
        """A sample of ``instance``'s metrics (0 when absent)."""
        url = f"http://127.0.0.1:{instance.metrics_port}/metrics"
        async with httpx.AsyncClient(timeout=10) as http:
            page = (await http.get(url)).text
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0


@dataclass
class Rig:
    """Everything a scheduler fault test drives."""

    timing: Timing
    server: FencingServer
    database: SchedulerDatabase
    cluster: SchedulerCluster
    jobs: list[str]
    monitor: StallMonitor


@contextlib.asynccontextmanager
async def running_rig(
    log_dir: Path, *, jobs: int, instances: int = 3, timing: Timing | None = None
) -> AsyncIterator[Rig]:
    """A fresh database, migrated; the fencing server; ``instances`` schedulers; ``jobs``
    http jobs (``job-1``...). Everything is stopped and the database dropped after, even
    when the test fails (frozen processes are resumed before they are stopped)."""
    timing = timing or Timing()
    async with fresh_database() as url:
        await migrate(url, log_dir)
        server = FencingServer(timing.work_s)
        server.start()
        monitor = StallMonitor(url)
        database = SchedulerDatabase(url)
        cluster = SchedulerCluster(url, log_dir, timing)
        try:
            await asyncio.to_thread(monitor.start)
            await cluster.start(instances)
            names = [f"job-{n}" for n in range(1, jobs + 1)]
            for name in names:
                await database.add_http_job(name, server.url, timing.every_ms)
            yield Rig(timing, server, database, cluster, names, monitor)
        finally:
            await asyncio.to_thread(cluster.close)
            await asyncio.to_thread(monitor.stop)
            server.stop()
            await database.close()


# Faults -----------------------------------------------------------------------------------


@dataclass
class Fault:
    """A signal sent to the instance holding a job, and what followed."""

    signal: str
    job: str
    victim: str
    # The victim's fencing token for the job when it was signalled.
    token: int
    # The end of the victim's lease by its last committed renewal.
    lease_until_ms: int
    signalled_ms: float
    resumed_ms: float | None = None
    # The job's first accepted request with a higher token.
    takeover: Attempt | None = None

    @property
    def takeover_delay_ms(self) -> float | None:
        """From the victim's lease end to the takeover's request."""
        return None if self.takeover is None else self.takeover.start_ms - self.lease_until_ms


@dataclass
class Seizure:
    """How many tries :func:`seize_holder` needed."""

    released_first: int = 0
    frozen_in_transaction: int = 0


async def seize_holder(
    rig: Rig,
    signum: signal.Signals,
    *,
    before_request: bool = False,
    seizure: Seizure | None = None,
    within_s: float = WAIT_S,
) -> tuple[Fault, Instance]:
    """Signal (SIGKILL or SIGSTOP) an instance while it holds a job; the fault and victim.

    The jobs table names the holder and its token; the signal goes at once, and the table is
    read again: if the row changed in between (the run ended first), the victim did not die
    or freeze holding the job: it is resumed (or restarted) and another holder is sought. A
    victim frozen inside a transaction on a job's row is resumed too (see
    :meth:`SchedulerDatabase.job_rows_locked`: that blocks the takeover until it resumes,
    a different fault from the one measured). ``before_request``: prefer a holder whose
    request has not reached the fencing server yet (a frozen one will send it late).
    """
    seizure = seizure or Seizure()
    start = time.monotonic()
    deadline = start + within_s
    while time.monotonic() < deadline:
        # A preference, not a condition: the window before the request is a few
        # milliseconds, and a loaded machine may miss it for a while.
        choosy = before_request and time.monotonic() - start < within_s / 2
        target = None
        for row in await rig.database.leases():
            victim = rig.cluster.by_id(row.holder)
            if victim is None or not victim.running:
                continue
            if choosy and rig.server.seen(row.name, row.version):
                continue
            target = (row, victim)
            break
        if target is None:
            await asyncio.sleep(SEIZE_POLL_S)
            continue
        row, victim = target
        if signum == signal.SIGKILL:
            rig.cluster.kill(victim)
        else:
            rig.cluster.freeze(victim)
        signalled = now_ms()
        after = await rig.database.lease(row.name)
        if (after.holder, after.version) != (row.holder, row.version):
            seizure.released_first += 1
            await _undo(rig, victim)
            continue
        if signum == signal.SIGSTOP and await rig.database.job_rows_locked():
            seizure.frozen_in_transaction += 1
            await _undo(rig, victim)
            continue
        fault = Fault(
            signal=signum.name,
            job=row.name,
            victim=victim.id,
            token=row.version,
            lease_until_ms=after.lease_until_ms,
            signalled_ms=signalled,
        )
        return fault, victim
    pytest.fail(f"no instance could be signalled while holding a job within {within_s:.0f}s")


async def _undo(rig: Rig, victim: Instance) -> None:
    if victim.frozen:
        rig.cluster.thaw(victim)
    else:
        await rig.cluster.restart(victim)


@dataclass(frozen=True, slots=True)
class DatabaseStall:
    """A time the test held the database's global read lock: every write waited."""

    start_ms: float
    end_ms: float


async def stall_database(rig: Rig, seconds: float) -> DatabaseStall:
    """Hold ``FLUSH TABLES WITH READ LOCK`` for ``seconds``: every take, renewal, release
    and record waits (reads go on), as on a database stalled by a disk or a lock, and then
    all of them proceed at once."""
    engine = create_engine(rig.database.url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("FLUSH TABLES WITH READ LOCK"))
            start = now_ms()
            try:
                await asyncio.sleep(seconds)
            finally:
                await conn.execute(text("UNLOCK TABLES"))
            return DatabaseStall(start, now_ms())
    finally:
        await engine.dispose()


async def wait_takeover(rig: Rig, fault: Fault) -> Attempt:
    """The job's first accepted request after the fault's token (waited for)."""

    async def taken_over() -> bool:
        fault.takeover = rig.server.first_accepted_after(fault.job, fault.token)
        return fault.takeover is not None

    await until(taken_over, f"a takeover of {fault.job} after {fault.victim} ({fault.signal})")
    assert fault.takeover is not None
    return fault.takeover


async def sigkill_round(rig: Rig, seizure: Seizure) -> Fault:
    """SIGKILL a holder, wait for the takeover, restart the slot."""
    fault, victim = await seize_holder(rig, signal.SIGKILL, seizure=seizure)
    await wait_takeover(rig, fault)
    await rig.cluster.restart(victim)
    return fault


async def sigstop_round(rig: Rig, seizure: Seizure, *, before_request: bool) -> Fault:
    """SIGSTOP a holder; SIGCONT once the job was taken over and the victim stayed frozen
    longer than a lease; wait until the victim recorded how its run ended."""
    fault, victim = await seize_holder(
        rig, signal.SIGSTOP, before_request=before_request, seizure=seizure
    )
    await wait_takeover(rig, fault)

    async def frozen_a_lease() -> bool:
        return now_ms() - fault.signalled_ms > (rig.timing.lease_s + rig.timing.renew_s) * 1000

    await until(frozen_a_lease, "a lease's time")
    rig.cluster.thaw(victim)
    fault.resumed_ms = now_ms()

    async def recorded() -> bool:
        runs = await rig.database.executions(fault.job)
        # The taker closes the victim's run as "abandoned" at once; wait for the victim's own
        # record, written when it wakes up and finds its token stale.
        return any(
            e.token == fault.token
            and e.instance == fault.victim
            and e.outcome != "running"
            and not e.error.startswith("abandoned")
            for e in runs
        )

    await until(recorded, f"{fault.victim} to record its run {fault.job}#{fault.token}")
    return fault


async def quiesce(rig: Rig) -> None:
    """Pause every job and wait until no run is in progress: the runs in progress end and
    release normally, so the fencing log is complete while the processes still run."""
    for job in rig.jobs:
        await rig.database.jobs.pause(job)

    async def idle() -> bool:
        leases = await rig.database.leases()
        return all(row.holder is None for row in leases) and rig.server.in_progress() == 0

    await until(idle, "the runs in progress to end after the jobs were paused")


# Analysis ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """The accepted requests of one token: one run (retries included)."""

    job: str
    token: int
    instance: str
    start_ms: float
    end_ms: float


@dataclass
class Analysis:
    """What the fencing log, the history and the logs show; ``violations`` must be empty."""

    runs: int = 0
    runs_by_job: dict[str, int] = field(default_factory=dict)
    expected_min_by_job: dict[str, int] = field(default_factory=dict)
    max_gap_ms: float = 0.0
    # The longest gap that no fault explains.
    max_quiet_gap_ms: float = 0.0
    takeover_delays_ms: list[float] = field(default_factory=list)
    refusals: int = 0
    late_attempts: int = 0
    # Takeovers counted by the metrics of the instances still running, and logged by all.
    takeovers_counted: int = 0
    takeovers_logged: int = 0
    victim_outcomes: dict[str, str] = field(default_factory=dict)
    # The environment's stalls the monitor measured (planned database stalls included).
    stalls: list[Stall] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def longest_stall_ms(self) -> float:
        """The longest stall measured."""
        return max((st.ms for st in self.stalls), default=0.0)

    @property
    def max_takeover_delay_ms(self) -> float:
        """The slowest takeover after a lease's end."""
        return max(self.takeover_delays_ms, default=0.0)


def runs_of(attempts: Iterable[Attempt]) -> list[Run]:
    """Accepted requests grouped by token, in start order."""
    grouped: dict[tuple[str, int], list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        if attempt.accepted:
            grouped[(attempt.job, attempt.token)].append(attempt)
    runs = [
        Run(
            job=job,
            token=token,
            instance=group[0].instance,
            start_ms=min(a.start_ms for a in group),
            end_ms=max(a.end_ms if a.end_ms is not None else a.start_ms for a in group),
        )
        for (job, token), group in grouped.items()
    ]
    return sorted(runs, key=lambda r: r.start_ms)


def _check_order(
    job: str,
    attempts: Sequence[Attempt],
    server_stalls: Sequence[Stall],
    violations: list[str],
) -> None:
    """No two accepted requests of a job overlap; tokens never decrease; an equal token is
    the same instance's retry. Unless the fencing server's own process stalled between the
    two: it then handles at once, in any order, requests that arrived apart."""
    accepted = sorted((a for a in attempts if a.accepted), key=lambda a: a.start_ms)
    for before, after in pairwise(accepted):
        if stalled_ms(server_stalls, before.start_ms, after.start_ms) > 0:
            continue
        if before.end_ms is None or before.end_ms > after.start_ms:
            violations.append(
                f"{job}: #{before.token} on {before.instance} ({before.start_ms:.0f}-"
                f"{before.end_ms}) overlaps #{after.token} on {after.instance} "
                f"(from {after.start_ms:.0f})"
            )
        if after.token < before.token or (
            after.token == before.token and after.instance != before.instance
        ):
            violations.append(
                f"{job}: #{after.token} on {after.instance} started after "
                f"#{before.token} on {before.instance}"
            )


async def analyse(rig: Rig, faults: Sequence[Fault]) -> Analysis:
    """Check the fencing log, the history, the logs and the metrics after :func:`quiesce`.

    Violations: overlapping runs or tokens out of order (:func:`_check_order`); a gap
    between runs over :attr:`Timing.gap_bound_ms`; fewer runs than the period allows once
    the gaps around faults are taken out (:attr:`Timing.cycle_bound_ms`); a takeover before
    the victim's lease ended or later than :attr:`Timing.takeover_bound_ms` after it, not
    under the next token, not logged by the taker (the bounds on time extended by the
    stalled time they contain, see :class:`StallMonitor`); a frozen victim's run not recorded
    ``fenced``, or a request of it that arrived after it resumed and was accepted; a
    refusal no fault explains; a request that broke the executor's contract; an instance
    whose takeover counter differs from the takeovers it logged.
    """
    timing = rig.timing
    result = Analysis(stalls=rig.monitor.stalls())
    stalls = result.stalls
    server_stalls = [st for st in stalls if st.kind == "process"]
    violations = result.violations
    violations += [f"malformed request: {why}" for why in rig.server.malformed()]
    attempts = rig.server.attempts()
    runs = runs_of(attempts)
    result.runs = len(runs)
    for job in rig.jobs:
        _check_order(job, [a for a in attempts if a.job == job], server_stalls, violations)
        mine = [r for r in runs if r.job == job]
        result.runs_by_job[job] = len(mine)
        if not mine:
            violations.append(f"{job} never ran")
            continue
        fault_time_ms = 0.0
        for before, after in pairwise(mine):
            gap = after.start_ms - before.end_ms
            result.max_gap_ms = max(result.max_gap_ms, gap)
            stalled = stalled_ms(stalls, before.start_ms, after.start_ms)
            faulted = stalled > 0 or any(
                before.start_ms <= f.signalled_ms <= after.start_ms for f in faults
            )
            if faulted:
                fault_time_ms += after.start_ms - before.start_ms
            else:
                result.max_quiet_gap_ms = max(result.max_quiet_gap_ms, gap)
            bound = timing.gap_bound_ms + stalled
            if gap > bound:
                violations.append(
                    f"{job}: {gap:.0f} ms without a run between #{before.token} and "
                    f"#{after.token} (bound {bound:.0f} ms, {stalled:.0f} of them stalled)"
                )
        window = mine[-1].start_ms - mine[0].start_ms - fault_time_ms
        expected = int(window // timing.cycle_bound_ms)
        result.expected_min_by_job[job] = expected
        if len(mine) - 1 < expected:
            violations.append(
                f"{job}: {len(mine)} runs where {window / 1000:.1f}s without faults allow at "
                f"least {expected + 1} (one per {timing.cycle_bound_ms:.0f} ms)"
            )
    for fault in faults:
        await _check_fault(rig, fault, attempts, result)
    # A frozen victim may have held other jobs than the one its fault names.
    thawed = [(f.victim, f.resumed_ms) for f in faults if f.resumed_ms is not None]
    for attempt in attempts:
        if attempt.accepted:
            continue
        result.refusals += 1
        # The fencing server's process stalled: requests that came apart were handled at once.
        window_start = attempt.start_ms - timing.lease_s * 1000
        if stalled_ms(server_stalls, window_start, attempt.start_ms) > 0:
            continue
        if not any(attempt.instance == v and attempt.start_ms >= t for v, t in thawed):
            violations.append(
                f"{attempt.job}: #{attempt.token} from {attempt.instance} refused "
                f"(highest {attempt.highest}) with no fault to explain it"
            )
    await _check_takeover_metrics(rig, result)
    return result


def _takeovers_logged(instance: Instance) -> int:
    return sum(1 for r in instance.log_records() if r.get("msg") == TAKEOVER_MESSAGE)


async def _check_takeover_metrics(rig: Rig, result: Analysis) -> None:
    result.takeovers_logged = sum(_takeovers_logged(i) for i in rig.cluster.instances)
    for instance in rig.cluster.running():
        counted = await rig.cluster.metric(instance, "webook_scheduler_takeovers_total")
        result.takeovers_counted += int(counted)
        if counted != _takeovers_logged(instance):
            result.violations.append(
                f"{instance.id}: webook_scheduler_takeovers_total is {counted:.0f}, "
                f"its log shows {_takeovers_logged(instance)} takeovers"
            )


async def _check_fault(
    rig: Rig, fault: Fault, attempts: Sequence[Attempt], result: Analysis
) -> None:
    violations = result.violations
    name = f"{fault.signal} {fault.victim} holding {fault.job}#{fault.token}"
    takeover = fault.takeover
    if takeover is None:
        violations.append(f"{name}: never taken over")
        return
    delay = takeover.start_ms - fault.lease_until_ms
    result.takeover_delays_ms.append(delay)
    stalled = stalled_ms(result.stalls, fault.lease_until_ms, takeover.start_ms)
    bound = rig.timing.takeover_bound_ms + stalled
    if delay < 0:
        violations.append(f"{name}: taken over {-delay:.0f} ms before its lease ended")
    elif delay > bound:
        violations.append(
            f"{name}: taken over {delay:.0f} ms after its lease ended "
            f"(bound {bound:.0f} ms, {stalled:.0f} of them stalled)"
        )
    if takeover.token != fault.token + 1 or takeover.instance == fault.victim:
        violations.append(f"{name}: taken over as #{takeover.token} by {takeover.instance}")
    taker = rig.cluster.by_id(takeover.instance)
    logged = taker is not None and any(
        record.get("msg") == TAKEOVER_MESSAGE
        and record.get("job") == fault.job
        and record.get("token") == takeover.token
        and record.get("previous_holder") == fault.victim
        for record in taker.log_records()
    )
    if not logged:
        violations.append(f"{name}: {takeover.instance} did not log a takeover of it")
    history = {e.token: e for e in await rig.database.executions(fault.job)}
    victim_run = history.get(fault.token)
    outcome = "not recorded" if victim_run is None else victim_run.outcome.value
    result.victim_outcomes[name] = outcome
    if fault.signal != signal.SIGSTOP.name:
        return
    if outcome != "fenced":
        violations.append(f"{name}: its run was recorded {outcome!r}, not 'fenced'")
    resumed = fault.resumed_ms if fault.resumed_ms is not None else float("inf")
    for attempt in attempts:
        held = (attempt.job, attempt.token, attempt.instance) == (
            fault.job,
            fault.token,
            fault.victim,
        )
        if held and attempt.start_ms >= resumed:
            result.late_attempts += 1
            if attempt.accepted:
                violations.append(f"{name}: its late request was accepted")


# The chaos report -------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerFaultOutcome:
    """One scheduler fault test, for the table at the end of ``make chaos``."""

    fault: str
    seconds: float
    runs: int
    sigkills: int
    sigstops: int
    late_attempts: int
    refusals: int
    max_gap_ms: float
    max_takeover_delay_ms: float
    takeovers_logged: int
    violations: int
    # The environment's stalls the monitor measured, and the longest (planned ones included).
    stalls: int = 0
    longest_stall_ms: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every check held."""
        return self.runs > 0 and self.violations == 0


SCHEDULER_FAULTS = pytest.StashKey[list[SchedulerFaultOutcome]]()
"""Where the scheduler fault tests leave their outcomes in the pytest config's stash."""


def scheduler_fault_table(outcomes: Sequence[SchedulerFaultOutcome]) -> str:
    """The scheduler faults as one Markdown table."""
    lines = [
        "| scheduler fault | time | runs | SIGKILL / SIGSTOP | late requests (refused 409) "
        "| longest gap | takeover after lease end (max) | takeovers logged "
        "| stalls measured (longest) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        result = "pass" if o.passed else f"**FAIL** ({o.violations} violations)"
        lines.append(
            f"| {o.fault} | {o.seconds:.0f}s | {o.runs} | {o.sigkills} / {o.sigstops} "
            f"| {o.late_attempts} ({o.refusals}) | {o.max_gap_ms / 1000:.2f}s "
            f"| {o.max_takeover_delay_ms:.0f} ms | {o.takeovers_logged} "
            f"| {o.stalls} ({o.longest_stall_ms / 1000:.1f}s) | {result} |"
        )
    return "\n".join(lines)
