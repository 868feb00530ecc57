"""Benchmark of the scheduler: job runs per second with three competing instances vs one.

Run ``python -m bench.scheduler`` (about a minute and a half on the 2-core reference machine;
``--mysql-url`` names the MariaDB/MySQL server, default
``mysql+asyncmy://root@127.0.0.1:3306``). A scratch database is created (and dropped at the
end) and the scheduler's migrations applied by ``python -m services.scheduler migrate``
(:func:`devstack.suite.migrate`, as the local stack does). ``JOBS`` ``local`` jobs running
the built-in ``noop`` executor every second (``@every 1s``) are defined, not yet due.

Each phase starts ``INSTANCES`` (3) or one instance, each a process of its own (an entry of
this module, started with ``multiprocessing``'s spawn) holding a
:class:`services.scheduler.scheduler.Scheduler` with its own engine, so the instances race
for rows as separate scheduler processes do. Once every instance is connected, all the jobs
are made due at once and every instance runs
:meth:`~services.scheduler.scheduler.Scheduler.run_forever` with the production loop and
its default options (each tick takes due jobs until none is left or ``max_running`` runs are
in progress, and a run that ends wakes a full instance; each run is taken under its lease,
released with its next run time and recorded). After ``WARMUP_S`` a ``WINDOW_S`` window is
measured: runs finished ``ok`` in it (from the executions table), MariaDB's ``Questions``
counter (``SHOW GLOBAL STATUS``; it counts every client of the server, so other load on a
shared server shows in it), the
statements the instances counted themselves (each engine's executes, commits and
rollbacks), their takes won and lost to another instance, and the CPU time of the
instances and of the database server (when it runs on this machine). ``JOBS`` is large
enough that jobs stay due through the window (checked). Phases alternate (1, 3, then 3, 1,
then 1, 3); medians are reported: runs/s with 3 instances vs 1, the server's query rate,
and the queries per run the instances sent (exact, where the server's count per run also
holds other clients' queries; both are printed per phase).

Checks, after every phase: no run ended ``failed`` or ``fenced`` (but those interrupted by
the instances' stop), no fencing token was used twice for a job, and no two runs of one job
overlapped in time. The exit code is 2 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Final

import psutil
from sqlalchemy import delete, event, func, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench._databases import CheckFailed
from bench._report import result
from devstack.suite import Infra, migrate
from kit.sql import SessionFactory, create_engine, scratch_database, session_factory
from services.scheduler.builtins import NOOP, register_builtins
from services.scheduler.domain import ExecutorKind, JobStatus, Outcome, encode_config
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.repository import SqlSchedulerRepository, SqlUnitOfWork
from services.scheduler.repository.dao import ExecutionRow, JobRow, SchedulerDAO
from services.scheduler.scheduler import Scheduler, SchedulerOptions
from services.scheduler.service import wall_clock_ms

MYSQL_SERVER: Final = "mysql+asyncmy://root@127.0.0.1:3306"

JOBS: Final = 2_000
CRON: Final = "@every 1s"
INSTANCES: Final = 3
ROUNDS: Final = 3
WARMUP_S: Final = 3.0
WINDOW_S: Final = 8.0
START_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 60.0
NOT_DUE_MS: Final = 24 * 3_600_000
INTERRUPTED: Final = "interrupted: the scheduler is stopping"

# Slots of an instance's shared counters (written by the instance, read by the benchmark).
STATEMENTS, RESETS, TAKES, TAKES_WON = range(4)
Counters = ctypes.Array[ctypes.c_longlong]


# The instance process ------------------------------------------------------------------


class CountingRepository(SqlSchedulerRepository):
    """The production repository counting the takes tried and won."""

    def __init__(self, dao: SchedulerDAO, counters: Counters) -> None:
        super().__init__(dao)
        self._counters = counters

    async def take(
        self, job_id: int, *, version: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """The conditional take, counted."""
        won = await super().take(
            job_id, version=version, holder=holder, lease_until_ms=lease_until_ms, now_ms=now_ms
        )
        self._counters[TAKES] += 1
        self._counters[TAKES_WON] += int(won)
        return won


class CountingUnitOfWork(SqlUnitOfWork):
    """The production unit of work with a :class:`CountingRepository`."""

    def __init__(self, sessions: SessionFactory, counters: Counters) -> None:
        super().__init__(sessions)
        self._counters = counters

    def open_repository(self, session: AsyncSession) -> SqlSchedulerRepository:
        return CountingRepository(SchedulerDAO(session), self._counters)


def count_statements(engine: AsyncEngine, counters: Counters) -> None:
    """Count every statement ``engine`` sends (what the server's ``Questions`` counts of this
    client; pings are not counted there): executes, commits and rollbacks, and the pool's
    reset of each connection checked in, a ``ROLLBACK`` even after a commit (also counted
    apart)."""

    def counted(*_: object, **__: object) -> None:
        counters[STATEMENTS] += 1

    def reset(*_: object, **__: object) -> None:
        counters[STATEMENTS] += 1
        counters[RESETS] += 1

    for name in ("before_cursor_execute", "commit", "rollback"):
        event.listen(engine.sync_engine, name, counted)
    event.listen(engine.sync_engine.pool, "reset", reset)


def instance_main(
    url: str, instance: str, counters: Counters, ready: Event, go: Event, stop: Event
) -> None:
    """Entry of an instance process (see the module)."""
    asyncio.run(run_instance(url, instance, counters, ready, go, stop))


async def run_instance(
    url: str, instance: str, counters: Counters, ready: Event, go: Event, stop: Event
) -> None:
    """Connect, say ready, run the loop from ``go`` until ``stop``."""
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        scheduler = Scheduler(
            lambda: CountingUnitOfWork(sessions, counters),
            register_builtins(ExecutorRegistry()),
            instance=instance,
            options=SchedulerOptions(),
        )
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        count_statements(engine, counters)
        ready.set()
        await asyncio.to_thread(go.wait)
        stopping = asyncio.Event()
        loop = asyncio.create_task(scheduler.run_forever(stopping))
        await asyncio.to_thread(stop.wait)
        # The runs the stop interrupts are expected: keep their warnings out of the output,
        # and the pool's complaint about a connection whose query the stop cancelled.
        logging.getLogger("services.scheduler").setLevel(logging.ERROR)
        logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
        stopping.set()
        await loop
    finally:
        await engine.dispose()


# The benchmark -------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What is read at each end of the window."""

    wall_ms: int
    monotonic: float
    questions: int
    statements: int
    resets: int
    takes: int
    takes_won: int
    instance_cpu_s: float
    server_cpu_s: float | None


@dataclass(frozen=True)
class Phase:
    """One measured window."""

    instances: int
    seconds: float
    runs: int
    questions: int
    statements: int
    resets: int
    takes: int
    takes_won: int
    instance_cpu_s: float
    server_cpu_s: float | None
    due_at_end: int

    @property
    def rate(self) -> float:
        """Runs finished per second."""
        return self.runs / self.seconds

    @property
    def query_rate(self) -> float:
        """The server's queries per second (every client)."""
        return self.questions / self.seconds

    @property
    def queries_per_run(self) -> float:
        """The server's queries per run."""
        return self.questions / self.runs

    @property
    def statements_per_run(self) -> float:
        """The statements the instances sent per run."""
        return self.statements / self.runs

    @property
    def lost_per_run(self) -> float:
        """Takes lost to another instance per run."""
        return (self.takes - self.takes_won) / self.runs


async def define_jobs(engine: AsyncEngine) -> None:
    """``JOBS`` active ``noop`` jobs every second, not due before the phases make them."""
    now = wall_clock_ms()
    config = encode_config({"function": NOOP})
    sessions = session_factory(engine)
    async with sessions() as session:
        session.add_all(
            JobRow(
                name=f"bench-noop-{n:05d}",
                cron=CRON,
                executor_kind=ExecutorKind.LOCAL.value,
                executor_config=config,
                status=int(JobStatus.ACTIVE),
                version=0,
                next_run_ms=now + NOT_DUE_MS,
                holder=None,
                lease_until_ms=0,
                ctime=now,
                utime=now,
            )
            for n in range(JOBS)
        )
        await session.commit()


async def reset(engine: AsyncEngine) -> None:
    """Every job free and not due; no executions."""
    async with engine.begin() as conn:
        await conn.execute(delete(ExecutionRow))
        await conn.execute(
            sql_update(JobRow).values(
                holder=None, lease_until_ms=0, next_run_ms=wall_clock_ms() + NOT_DUE_MS
            )
        )


async def make_due(engine: AsyncEngine) -> None:
    """Every job due now."""
    async with engine.begin() as conn:
        await conn.execute(sql_update(JobRow).values(next_run_ms=wall_clock_ms()))


async def questions(engine: AsyncEngine) -> int:
    """The server's ``Questions`` counter."""
    async with engine.connect() as conn:
        row = (await conn.execute(text("SHOW GLOBAL STATUS LIKE 'Questions'"))).one()
    return int(row[1])


def database_server() -> psutil.Process | None:
    """The MariaDB/MySQL server process, when it runs on this machine and can be read."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld"):
            try:
                proc.cpu_times()
            except psutil.Error:
                return None
            return proc
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    """User and system CPU time of ``proc``."""
    times = proc.cpu_times()
    return float(times.user + times.system)


async def snapshot(
    engine: AsyncEngine,
    counters: Sequence[Counters],
    instances: Sequence[psutil.Process],
    server: psutil.Process | None,
) -> Snapshot:
    """The counters at this instant."""
    return Snapshot(
        wall_ms=wall_clock_ms(),
        monotonic=time.monotonic(),
        questions=await questions(engine),
        statements=sum(c[STATEMENTS] for c in counters),
        resets=sum(c[RESETS] for c in counters),
        takes=sum(c[TAKES] for c in counters),
        takes_won=sum(c[TAKES_WON] for c in counters),
        instance_cpu_s=sum(cpu_seconds(p) for p in instances),
        server_cpu_s=None if server is None else cpu_seconds(server),
    )


async def wait_set(flag: Event, what: str, seconds: float) -> None:
    """Wait for ``flag`` without blocking the loop; :class:`CheckFailed` after ``seconds``."""
    if not await asyncio.to_thread(flag.wait, seconds):
        raise CheckFailed(f"{what} did not happen within {seconds:.0f} s")


async def measure_phase(url: str, engine: AsyncEngine, instances: int) -> Phase:
    """One phase with ``instances`` instance processes (see the module)."""
    await reset(engine)
    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    counters: list[Counters] = []
    readies: list[Event] = []
    processes: list[SpawnProcess] = []
    server = database_server()
    try:
        for n in range(instances):
            shared = ctx.RawArray(ctypes.c_longlong, 4)
            ready = ctx.Event()
            process = ctx.Process(
                target=instance_main,
                args=(url, f"bench-{instances}-{n}", shared, ready, go, stop),
                name=f"scheduler-instance-{n}",
                daemon=True,
            )
            process.start()
            counters.append(shared)
            readies.append(ready)
            processes.append(process)
        for ready in readies:
            await wait_set(ready, "an instance's start", START_TIMEOUT_S)
        procs = [psutil.Process(p.pid) for p in processes if p.pid is not None]
        await make_due(engine)
        go.set()
        await asyncio.sleep(WARMUP_S)
        first = await snapshot(engine, counters, procs, server)
        await asyncio.sleep(WINDOW_S)
        last = await snapshot(engine, counters, procs, server)
        due_at_end = await due_now(engine, last.wall_ms)
        stop.set()
        for process in processes:
            await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
            if process.exitcode != 0:
                raise CheckFailed(f"{process.name} ended with exit code {process.exitcode}")
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(10)
    runs = await check_executions(engine, first.wall_ms, last.wall_ms)
    server_cpu = (
        None
        if first.server_cpu_s is None or last.server_cpu_s is None
        else last.server_cpu_s - first.server_cpu_s
    )
    return Phase(
        instances=instances,
        seconds=last.monotonic - first.monotonic,
        runs=runs,
        questions=last.questions - first.questions,
        statements=last.statements - first.statements,
        resets=last.resets - first.resets,
        takes=last.takes - first.takes,
        takes_won=last.takes_won - first.takes_won,
        instance_cpu_s=last.instance_cpu_s - first.instance_cpu_s,
        server_cpu_s=server_cpu,
        due_at_end=due_at_end,
    )


async def due_now(engine: AsyncEngine, now_ms: int) -> int:
    """Jobs due at ``now_ms`` and not leased (the backlog)."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.next_run_ms <= now_ms, JobRow.holder.is_(None))
        )
    return int(count or 0)


async def check_executions(engine: AsyncEngine, start_ms: int, end_ms: int) -> int:
    """Check the phase's history (see the module); the runs that ended ``ok`` in the window."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    ExecutionRow.job_id,
                    ExecutionRow.token,
                    ExecutionRow.started_ms,
                    ExecutionRow.ended_ms,
                    ExecutionRow.outcome,
                    ExecutionRow.error,
                ).order_by(ExecutionRow.job_id, ExecutionRow.started_ms, ExecutionRow.id)
            )
        ).all()
    return await asyncio.to_thread(_checked_runs, list(rows), start_ms, end_ms)


def _checked_runs(rows: list[Any], start_ms: int, end_ms: int) -> int:
    bad = [
        r
        for r in rows
        if r.outcome == Outcome.FENCED.value
        or (r.outcome == Outcome.FAILED.value and r.error != INTERRUPTED)
    ]
    if bad:
        raise CheckFailed(f"{len(bad)} runs failed or were fenced, e.g. {tuple(bad[0])}")
    tokens = {(r.job_id, r.token) for r in rows}
    if len(tokens) != len(rows):
        raise CheckFailed(f"{len(rows) - len(tokens)} fencing tokens were used twice")
    previous: Any = None
    for row in rows:
        if previous is not None and previous.job_id == row.job_id:
            if previous.ended_ms is None or row.started_ms < previous.ended_ms:
                raise CheckFailed(f"two runs of job {row.job_id} overlapped: {previous}, {row}")
        previous = row
    return sum(
        1
        for r in rows
        if r.outcome == Outcome.OK.value
        and r.ended_ms is not None
        and start_ms <= r.ended_ms < end_ms
    )


def describe(phase: Phase) -> str:
    """One line of a phase's figures."""
    server = (
        ""
        if phase.server_cpu_s is None
        else f", server CPU {phase.server_cpu_s / phase.runs * 1e6:.0f} us"
    )
    return (
        f"{phase.instances} instance(s): {phase.rate:6.1f} runs/s ({phase.runs} in "
        f"{phase.seconds:.1f} s), {phase.query_rate:6.0f} queries/s on the server, "
        f"{phase.queries_per_run:.1f} queries/run ({phase.statements_per_run:.1f} sent by "
        f"the instances, {phase.resets / phase.runs:.1f} of them the pool's ROLLBACK on "
        f"check-in), {phase.lost_per_run:.2f} takes lost/run; per run: instances' CPU "
        f"{phase.instance_cpu_s / phase.runs * 1e6:.0f} us{server}; {phase.due_at_end} due "
        "at the end"
    )


async def run(mysql_server: str, log_dir: Path) -> None:
    """Every phase on one scratch database; prints the figures."""
    async with scratch_database(mysql_server, prefix="webook_bench_sched") as url:
        started = time.monotonic()
        await asyncio.to_thread(
            migrate,
            "scheduler",
            Infra(
                redis_url="",
                etcd_endpoints=[],
                kafka_bootstrap="",
                database_url=url,
                mode="test",
                pki=None,
            ),
            log_dir,
        )
        engine = create_engine(url)
        try:
            await define_jobs(engine)
            print(
                f"database migrated, {JOBS} '{CRON}' noop jobs defined in "
                f"{time.monotonic() - started:.1f} s"
            )
            phases: dict[int, list[Phase]] = {1: [], INSTANCES: []}
            for round_ in range(ROUNDS):
                order = (1, INSTANCES) if round_ % 2 == 0 else (INSTANCES, 1)
                for instances in order:
                    phase = await measure_phase(url, engine, instances)
                    print(describe(phase))
                    if phase.due_at_end == 0:
                        print("  (no job was left due at the end: the backlog ran out)")
                    phases[instances].append(phase)
        finally:
            await engine.dispose()
    report(phases[INSTANCES], phases[1])


def report(many: list[Phase], one: list[Phase]) -> None:
    """The result rows: medians of the phases."""

    def median(phases: list[Phase], attribute: str) -> float:
        return statistics.median(float(getattr(p, attribute)) for p in phases)

    rate_many, rate_one = median(many, "rate"), median(one, "rate")
    qps_many, qps_one = median(many, "query_rate"), median(one, "query_rate")
    spr_many, spr_one = median(many, "statements_per_run"), median(one, "statements_per_run")
    setup = f"MariaDB, {JOBS} due '{CRON}' noop jobs"
    result(
        f"scheduler runs/s, {INSTANCES} instances vs 1 ({setup})",
        f"{rate_many:.0f} runs/s",
        f"{rate_one:.0f} runs/s",
        rate_many / rate_one,
    )
    result(
        f"scheduler database query rate, {INSTANCES} instances vs 1 (server Questions)",
        f"{qps_many:.0f} queries/s",
        f"{qps_one:.0f} queries/s",
        qps_many / qps_one,
    )
    result(
        f"scheduler queries per run, {INSTANCES} instances vs 1 (sent by the instances)",
        f"{spr_many:.1f}",
        f"{spr_one:.1f}",
        spr_many / spr_one,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Create the database, measure, print, drop it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--mysql-url", default=MYSQL_SERVER, help="MariaDB/MySQL server URL")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            asyncio.run(run(args.mysql_url, Path(tmp)))
        except CheckFailed as exc:
            sys.stderr.write(f"check failed: {exc}\n")
            return 2
    print(f"bench.scheduler took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
