"""The scheduler loop: take a due job, run it under a renewed lease, release it, record it.

Any number of instances (processes, or :class:`Scheduler` objects in one process) share the
jobs table; each has its own ``instance`` id. Each tick an instance:

1. reads a few due jobs (active, ``next_run_ms <= now``, free or with an expired lease),
   most overdue first, and tries them in a random order to **take** one with a conditional
   ``UPDATE ... SET holder, lease_until_ms, version = version + 1 WHERE id AND version =
   <read> AND still due and free``. Of several instances racing, exactly one updates the
   row; the others try their next candidate. It takes again at once while jobs are due and
   it runs fewer than ``max_running``, then waits for the next tick. Taking a job whose
   holder stopped renewing (its lease expired) is a **takeover**, counted and logged.
2. runs the job's executor — by its kind: a registered function (``local``), or a remote
   call (``http``, ``grpc``: :mod:`services.scheduler.remote`) — with a
   :class:`~services.scheduler.executors.RunContext` whose ``token`` is the job's new
   version (the **fencing token**), while a companion task **renews** the lease every
   ``renew_every_s`` (conditional on ``version = token AND holder = me``). A refused
   renewal means another instance took the job: the run is cancelled and recorded
   ``fenced``, as is a run whose executor (or remote callee) refused its token. If the
   database cannot be reached to renew (or a renewal is still pending), the run is
   cancelled once the lease has expired by this instance's clock. A lease counts from
   before its take was sent; one that a slow take nearly used up is renewed before the
   executor starts (:meth:`Scheduler._confirm_lease`).
3. **releases** the job (conditional on the token too) with ``next_run_ms`` the first cron
   time after *now*. Missed runs policy: a job that was due several times while every
   scheduler was down runs **once**, then resumes at its next future time (no catch-up
   burst). A failed run is not retried before its next cron time.
4. records the execution (start, end, outcome, instance, token, error).

Stopping (cancellation) interrupts runs in progress: each is recorded ``failed``
("interrupted") and released with its ``next_run_ms`` unchanged, so another instance runs
it again at once.

Metrics (``webook_scheduler_*``): runs by outcome, run duration, takeovers, fencing
rejections by stage, jobs due / late / running here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from kit.sql import WriteConflict
from services.scheduler.cron import parse
from services.scheduler.domain import ExecutorKind, Job, Lease, Outcome, error_text
from services.scheduler.errors import SchedulerError
from services.scheduler.executors import Executor, ExecutorRegistry, RunContext, StaleToken
from services.scheduler.service import Clock, UnitOfWork, in_transaction, wall_clock_ms

logger = logging.getLogger(__name__)
FIRST: Final = asyncio.FIRST_COMPLETED
# Renewals tried before a run whose lease wore down during its take (see _confirm_lease).
CONFIRM_ATTEMPTS: Final = 3
# How often a pending renewal's wait looks at the clock again.
RENEWAL_WATCH_S: Final = 0.1

RUNS: Final = Counter(
    "webook_scheduler_runs_total", "Job runs finished by this instance, by outcome.", ["outcome"]
)
RUN_SECONDS: Final = Histogram(
    "webook_scheduler_run_duration_seconds",
    "Wall time of job runs, from take to release.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
TAKEOVERS: Final = Counter(
    "webook_scheduler_takeovers_total",
    "Jobs taken from another instance whose lease had expired.",
)
FENCING_REJECTIONS: Final = Counter(
    "webook_scheduler_fencing_rejections_total",
    "Stale fencing tokens refused, by stage (renew, release, executor).",
    ["stage"],
)
JOBS_DUE: Final = Gauge("webook_scheduler_jobs_due", "Active jobs whose run time has come.")
JOBS_LATE: Final = Gauge(
    "webook_scheduler_jobs_late", "Active jobs due for longer than the lateness threshold."
)
JOBS_RUNNING: Final = Gauge("webook_scheduler_jobs_running", "Runs in progress here.")
# The due/late gauges count over the whole table: refreshed at most this often.
GAUGE_PERIOD_S: Final = 1.0
# Every outcome and stage exported at 0 from the start: a rate over a series that does not
# exist yet would show nothing until the first run or rejection.
for _outcome in (Outcome.OK, Outcome.FAILED, Outcome.FENCED):
    RUNS.labels(_outcome.value)
for _stage in ("renew", "release", "executor"):
    FENCING_REJECTIONS.labels(_stage)


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """Timing and sizing of a :class:`Scheduler`.

    ``lease_ms`` must exceed ``renew_every_s`` with room for a slow renewal: a lease is
    renewed about ``lease_ms / renew_every_s`` times before it could expire.
    """

    lease_ms: int = 30_000
    renew_every_s: float = 10.0
    tick_s: float = 1.0
    # Due jobs read per tick; a take lost to another instance tries the next one.
    candidates: int = 8
    # Runs in progress per instance; a full instance takes nothing.
    max_running: int = 16
    # A due job is counted late once it waited this long.
    late_after_ms: int = 60_000
    # Executions older than this are deleted (0 keeps them), checked every purge_every_s.
    retention_ms: int = 30 * 24 * 3600 * 1000
    purge_every_s: float = 3600.0
    # On stop, runs in progress get this long to finish (still renewing) before they are
    # interrupted: a remote callee keeps working on a call its caller abandoned.
    stop_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.lease_ms <= 0 or self.renew_every_s <= 0 or self.tick_s <= 0:
            raise ValueError("lease_ms, renew_every_s and tick_s must be positive")
        if self.renew_every_s * 1000 >= self.lease_ms:
            raise ValueError(
                f"renew_every_s ({self.renew_every_s}) must be shorter than the lease "
                f"({self.lease_ms} ms), or leases expire between renewals"
            )
        if self.candidates < 1 or self.max_running < 1:
            raise ValueError("candidates and max_running must be at least 1")
        if self.retention_ms < 0:
            raise ValueError("retention_ms cannot be negative")
        if self.stop_grace_s < 0:
            raise ValueError("stop_grace_s cannot be negative")


@dataclass(frozen=True, slots=True)
class RunReport:
    """How one run ended, as recorded."""

    job: str
    token: int
    outcome: Outcome
    error: str
    took_over_from: str | None
    execution_id: int | None


@dataclass(slots=True)
class _RunState:
    """Shared by a run and its lease keeper."""

    lease_until_ms: int
    lost: bool = False


async def take_once(
    units: Callable[[], UnitOfWork], take: Callable[[UnitOfWork], Awaitable[bool]]
) -> bool:
    """``take`` in one transaction, committed if it won; :class:`WriteConflict` not retried."""
    async with units() as uow:
        won = await take(uow)
        if won:
            await uow.commit()
        return won


class Scheduler:
    """One scheduler instance over the shared jobs table.

    Args:
        units: unit-of-work factory over the scheduler's database.
        executors: the in-process executors ``local`` jobs name.
        remote: the executors of the other kinds (``http``, ``grpc``:
            :func:`services.scheduler.remote.remote_executors`); a job of a kind missing
            here is recorded as a failed run.
        instance: this instance's id (unique among the instances: host and pid, pod name).
        clock: now in epoch ms; lease expiry and due times follow it (tests inject one).
        options: timing and sizing.
    """

    def __init__(
        self,
        units: Callable[[], UnitOfWork],
        executors: ExecutorRegistry,
        *,
        instance: str,
        remote: Mapping[ExecutorKind, Executor] | None = None,
        clock: Clock = wall_clock_ms,
        options: SchedulerOptions | None = None,
    ) -> None:
        if not instance or len(instance) > 128:
            raise ValueError("instance must be 1-128 characters")
        self._uow = units
        self._executors = executors
        self._remote = {kind.value: executor for kind, executor in (remote or {}).items()}
        self.instance = instance
        self._clock = clock
        self.options = options or SchedulerOptions()
        self._pending_renewals: set[asyncio.Future[int | None]] = set()

    # Leases ---------------------------------------------------------------------------

    async def take(self) -> Lease | None:
        """Take one due job, or ``None`` when none is due or every race was lost."""
        now = self._clock()
        async with self._uow() as uow:
            candidates = list(await uow.jobs.due(now, limit=self.options.candidates))
        # Instances read the same most-overdue candidates: each tries them in its own order,
        # so that they mostly race for different rows instead of all for the first.
        random.shuffle(candidates)
        for job in candidates:
            # Read again for each candidate: a take that waited on a locked row took time
            # that must not come off the next one's lease.
            now = self._clock()
            lease_until = now + self.options.lease_ms

            async def take_it(
                uow: UnitOfWork, job: Job = job, now: int = now, lease_until: int = lease_until
            ) -> bool:
                return await uow.jobs.take(
                    job.id,
                    version=job.version,
                    holder=self.instance,
                    lease_until_ms=lease_until,
                    now_ms=now,
                )

            try:
                won = await take_once(self._uow, take_it)
            except WriteConflict as exc:
                # Another transaction holds the row (a peer renewing, or one frozen
                # mid-transaction): waiting would stall every job behind this one.
                logger.info(
                    "job row locked by another transaction; trying the next",
                    extra={"job": job.name, "instance": self.instance, "error": str(exc)},
                )
                continue
            if not won:
                continue
            previous = job.holder
            lease = Lease(
                job=job,
                token=job.version + 1,
                holder=self.instance,
                lease_until_ms=lease_until,
                took_over_from=previous,
            )
            fields = {"job": job.name, "token": lease.token, "instance": self.instance}
            if previous is not None:
                TAKEOVERS.inc()
                logger.warning(
                    "job taken over from an expired lease",
                    extra={**fields, "previous_holder": previous, "expired_ms": job.lease_until_ms},
                )
            else:
                logger.info("job taken", extra={**fields, "late_ms": max(0, now - job.next_run_ms)})
            return lease
        return None

    async def renew(self, lease: Lease) -> int | None:
        """Extend ``lease``; its new expiry, or ``None`` if the token is no longer current."""
        now = self._clock()
        until = now + self.options.lease_ms
        renewed = await in_transaction(
            self._uow,
            lambda uow: uow.jobs.renew(
                lease.job.id,
                token=lease.token,
                holder=lease.holder,
                lease_until_ms=until,
                now_ms=now,
            ),
        )
        if not renewed:
            FENCING_REJECTIONS.labels("renew").inc()
            logger.warning(
                "lease renewal refused: stale fencing token",
                extra={"job": lease.job.name, "token": lease.token, "instance": lease.holder},
            )
            return None
        return until

    async def release(self, lease: Lease, *, next_run_ms: int) -> bool:
        """Free ``lease`` with the next run time; ``False`` if the token is stale."""
        now = self._clock()
        released = await in_transaction(
            self._uow,
            lambda uow: uow.jobs.release(
                lease.job.id,
                token=lease.token,
                holder=lease.holder,
                next_run_ms=next_run_ms,
                now_ms=now,
            ),
        )
        if not released:
            FENCING_REJECTIONS.labels("release").inc()
            logger.warning(
                "release refused: stale fencing token",
                extra={"job": lease.job.name, "token": lease.token, "instance": lease.holder},
            )
        return released

    async def still_holder(self, lease: Lease) -> bool:
        """Whether the database still shows ``lease``'s token and holder on the job."""
        async with self._uow() as uow:
            return await uow.jobs.holds(lease.job.id, token=lease.token, holder=lease.holder)

    def next_run_ms(self, lease: Lease) -> int:
        """The first cron time after now: a job missed several times runs once, then here."""
        return parse(lease.job.cron).next_after_ms(self._clock())

    # Runs -----------------------------------------------------------------------------

    def _executor(self, lease: Lease) -> Executor:
        kind = lease.job.executor_kind
        if kind == ExecutorKind.LOCAL:
            return self._executors.get(str(lease.job.executor_config.get("function", "")))
        remote = self._remote.get(kind)
        if remote is None:
            raise ValueError(f"executor kind {kind!r} is not supported by this instance")
        return remote

    async def _confirm_lease(self, lease: Lease, state: _RunState) -> bool:
        """Whether the run may start: at least ``lease_ms`` less one renewal interval left.

        A lease counts from the clock read before its take was sent, so a take (or execution
        record) that waited on the database used part of it up, all of it after a long
        enough wait: other instances may then take the job over while this run has only
        begun. Such a lease is renewed first (a few times at most); ``False`` when it could
        not be (``state.lost`` says whether another instance holds the job now).
        """
        floor_ms = self.options.lease_ms - self.options.renew_every_s * 1000
        for _ in range(CONFIRM_ATTEMPTS):
            if state.lease_until_ms - self._clock() >= floor_ms:
                return True
            try:
                until = await self.renew(lease)
            except Exception as exc:
                logger.warning(
                    "could not renew a lease worn down before the run started",
                    extra={"job": lease.job.name, "token": lease.token, "error": repr(exc)},
                )
                return False
            if until is None:
                state.lost = True
                return False
            state.lease_until_ms = until
        confirmed = state.lease_until_ms - self._clock() >= floor_ms
        if not confirmed:
            logger.warning(
                "lease renewals too slow to start a run",
                extra={"job": lease.job.name, "token": lease.token, "instance": lease.holder},
            )
        return confirmed

    async def _renew_within_lease(self, lease: Lease, state: _RunState) -> int | None:
        """:meth:`renew`, waited for no longer than the lease lasts.

        A renewal still pending (the database stalled) when the lease ends counts as
        refused: from then on another instance may take the job over, so the run must not
        go on. The pending statement is left to finish on its own (cancelling it mid-flight
        would cost its connection); it can only extend a lease this run no longer uses.
        """
        renewal = asyncio.ensure_future(self.renew(lease))
        try:
            # In slices, so that the lease's end follows the instance's clock.
            while (remaining_ms := state.lease_until_ms - self._clock()) > 0:
                done, _ = await asyncio.wait(
                    {renewal}, timeout=min(remaining_ms / 1000, RENEWAL_WATCH_S)
                )
                if done:
                    return renewal.result()
        except asyncio.CancelledError:
            renewal.cancel()
            raise
        if renewal.done():
            return renewal.result()
        self._pending_renewals.add(renewal)
        renewal.add_done_callback(self._renewal_settled)
        logger.error(
            "lease expired while its renewal was pending; stopping the run",
            extra={"job": lease.job.name, "token": lease.token, "instance": lease.holder},
        )
        return None

    def _renewal_settled(self, renewal: asyncio.Future[int | None]) -> None:
        self._pending_renewals.discard(renewal)
        if not renewal.cancelled() and renewal.exception() is not None:
            logger.info(
                "a renewal abandoned at its lease's end failed",
                extra={"error": repr(renewal.exception())},
            )

    async def _keep_lease(self, lease: Lease, state: _RunState, work: asyncio.Task[None]) -> None:
        """Renew until cancelled; cancel ``work`` once the lease is lost."""
        while True:
            await asyncio.sleep(self.options.renew_every_s)
            try:
                until = await self._renew_within_lease(lease, state)
            except Exception as exc:
                if self._clock() < state.lease_until_ms:
                    logger.warning(
                        "lease renewal failed; retrying before it expires",
                        extra={"job": lease.job.name, "token": lease.token, "error": repr(exc)},
                    )
                    continue
                logger.error(
                    "lease expired while the database was unreachable; stopping the run",
                    extra={"job": lease.job.name, "token": lease.token, "error": repr(exc)},
                )
                until = None
            if until is None:
                state.lost = True
                work.cancel()
                return
            state.lease_until_ms = until

    async def _start_record(self, lease: Lease, started_ms: int) -> int | None:
        async def record(uow: UnitOfWork) -> int:
            if lease.took_over_from is not None:
                # The previous holder died or froze mid-run: its record would say "running"
                # forever. (A frozen holder that wakes up cannot finish it: its token is stale
                # and its own finish only overwrites it with "fenced".)
                await uow.jobs.abandon_executions(
                    lease.job.id,
                    before_token=lease.token,
                    ended_ms=started_ms,
                    error=f"abandoned: lease expired, taken over by {lease.holder}",
                )
            return await uow.jobs.start_execution(
                job_id=lease.job.id,
                token=lease.token,
                instance=lease.holder,
                started_ms=started_ms,
            )

        try:
            return await in_transaction(self._uow, record)
        except Exception as exc:
            logger.error(
                "could not record the start of a run",
                extra={"job": lease.job.name, "token": lease.token, "error": repr(exc)},
            )
            return None

    async def _finish_record(self, execution_id: int | None, outcome: Outcome, error: str) -> None:
        if execution_id is None:
            return
        ended = self._clock()
        try:
            await in_transaction(
                self._uow,
                lambda uow: uow.jobs.finish_execution(
                    execution_id, ended_ms=ended, outcome=outcome, error=error
                ),
            )
        except Exception as exc:
            logger.error(
                "could not record the end of a run",
                extra={"execution_id": execution_id, "error": repr(exc)},
            )

    async def run(self, lease: Lease) -> RunReport:
        """Run ``lease``'s job to the end under a renewed lease, release and record it."""
        job = lease.job
        started = self._clock()
        state = _RunState(lease_until_ms=lease.lease_until_ms)

        async def check_holder() -> bool:
            return not state.lost and await self.still_holder(lease)

        context = RunContext(
            job_id=job.id,
            job_name=job.name,
            token=lease.token,
            instance=lease.holder,
            config=job.executor_config,
            scheduled_ms=job.next_run_ms,
            check_holder=check_holder,
        )
        outcome, error = Outcome.OK, ""
        execution_id: int | None = None
        JOBS_RUNNING.inc()
        loop = asyncio.get_running_loop()
        began = loop.time()
        next_run_ms: int | None = None
        try:
            execution_id = await self._start_record(lease, started)
            if not await self._confirm_lease(lease, state):
                # Nothing ran: the job stays due (another instance, or this one at its next
                # tick, takes it with a lease of its own).
                next_run_ms = job.next_run_ms
                outcome, error = (
                    (Outcome.FENCED, "lease lost before the run started")
                    if state.lost
                    else (Outcome.FAILED, "the lease could not be confirmed before the run")
                )
            else:
                try:
                    work = asyncio.create_task(self._executor(lease)(context))
                except (SchedulerError, ValueError) as exc:
                    outcome, error = Outcome.FAILED, str(exc)
                else:
                    outcome, error = await self._supervise(lease, state, work)
        except asyncio.CancelledError:
            await self._interrupted(lease, state, execution_id)
            raise
        finally:
            JOBS_RUNNING.dec()
            RUN_SECONDS.observe(loop.time() - began)
        # Released even after a fenced write, in case the lease is still ours (then the
        # job is free at once rather than when the lease expires); a stale token is refused.
        if not state.lost:
            try:
                released = await self.release(
                    lease,
                    next_run_ms=self.next_run_ms(lease) if next_run_ms is None else next_run_ms,
                )
            except Exception as exc:
                logger.error(
                    "could not release a job; its lease will expire",
                    extra={"job": job.name, "token": lease.token, "error": repr(exc)},
                )
            else:
                if not released and outcome is not Outcome.FENCED:
                    outcome, error = Outcome.FENCED, "release refused: stale fencing token"
        await self._finish_record(execution_id, outcome, error)
        RUNS.labels(outcome.value).inc()
        logger.log(
            logging.INFO if outcome is Outcome.OK else logging.WARNING,
            "job run ended",
            extra={
                "job": job.name,
                "token": lease.token,
                "instance": lease.holder,
                "outcome": outcome.value,
                "error": error,
                "duration_ms": self._clock() - started,
            },
        )
        return RunReport(
            job=job.name,
            token=lease.token,
            outcome=outcome,
            error=error,
            took_over_from=lease.took_over_from,
            execution_id=execution_id,
        )

    async def _supervise(
        self, lease: Lease, state: _RunState, work: asyncio.Task[None]
    ) -> tuple[Outcome, str]:
        """Await ``work`` while keeping the lease; the outcome and error text."""
        keeper = asyncio.create_task(self._keep_lease(lease, state, work))
        try:
            await work
        except StaleToken as exc:
            FENCING_REJECTIONS.labels("executor").inc()
            return Outcome.FENCED, error_text(exc)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            if state.lost:
                return Outcome.FENCED, "lease lost: renewal refused or expired"
            return Outcome.FAILED, "the executor was cancelled"
        except Exception as exc:
            if state.lost:
                return Outcome.FENCED, f"lease lost; then {error_text(exc)}"
            return Outcome.FAILED, error_text(exc)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if state.lost:
            return Outcome.FENCED, "lease lost: renewal refused or expired"
        return Outcome.OK, ""

    async def _interrupted(self, lease: Lease, state: _RunState, execution_id: int | None) -> None:
        """The scheduler is stopping and the run outlasted the grace: record it as
        interrupted. A ``local`` run stopped with its task, so the job is handed back due
        at once (unless already lost); a remote callee may still be working on the
        abandoned call, so that job is left to its lease, which expires unrenewed and lets
        another instance take it over (no second run while the first may still go on)."""
        remote = lease.job.executor_kind != ExecutorKind.LOCAL
        if not state.lost and not remote:
            with contextlib.suppress(Exception):
                await self.release(lease, next_run_ms=lease.job.next_run_ms)
        error = "interrupted: the scheduler is stopping"
        if remote:
            error += "; the remote call may still run, the job waits for its lease to expire"
        await self._finish_record(execution_id, Outcome.FAILED, error)
        RUNS.labels(Outcome.FAILED.value).inc()
        logger.warning(
            "job run interrupted: scheduler stopping",
            extra={"job": lease.job.name, "token": lease.token, "instance": lease.holder},
        )

    async def tick(self) -> RunReport | None:
        """Take one due job and run it to the end (tests and one-shot use)."""
        lease = await self.take()
        return None if lease is None else await self.run(lease)

    # Upkeep ---------------------------------------------------------------------------

    async def refresh_gauges(self) -> tuple[int, int]:
        """Update the due/late gauges from the table; ``(due, late)``."""
        now = self._clock()
        async with self._uow() as uow:
            due, late = await uow.jobs.due_counts(
                now, late_before_ms=now - self.options.late_after_ms
            )
        JOBS_DUE.set(due)
        JOBS_LATE.set(late)
        return due, late

    async def purge_history(self) -> int:
        """Delete executions older than the retention, in batches; how many."""
        if self.options.retention_ms == 0:
            return 0
        cutoff = self._clock() - self.options.retention_ms
        total = 0
        while True:
            deleted = await in_transaction(
                self._uow,
                lambda uow: uow.jobs.purge_executions(started_before_ms=cutoff, limit=1000),
            )
            total += deleted
            if deleted < 1000:
                if total:
                    logger.info("execution history purged", extra={"deleted": total})
                return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set: each tick takes due jobs while there are some and
        room for them, each run in its own task; then interrupt the runs still in progress
        (they are handed back, due at once)."""
        running: set[asyncio.Task[RunReport]] = set()
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + random.uniform(0, self.options.purge_every_s)
        next_gauges = loop.time()
        freed = asyncio.Event()

        def ended(task: asyncio.Task[RunReport]) -> None:
            running.discard(task)
            freed.set()

        logger.info("scheduler started", extra={"instance": self.instance})
        try:
            while not stop.is_set():
                full = False
                try:
                    # Take until nothing is due (or every race was lost) or this instance
                    # is full: one take per tick would leave a backlog of due jobs waiting
                    # a tick each.
                    while not stop.is_set():
                        if len(running) >= self.options.max_running:
                            full = True
                            break
                        lease = await self.take()
                        if lease is None:
                            break
                        task = asyncio.create_task(self.run(lease))
                        running.add(task)
                        task.add_done_callback(ended)
                    if loop.time() >= next_gauges:
                        next_gauges = loop.time() + GAUGE_PERIOD_S
                        await self.refresh_gauges()
                    if loop.time() >= next_purge:
                        next_purge = loop.time() + self.options.purge_every_s
                        await self.purge_history()
                except Exception as exc:
                    logger.error(
                        "scheduler tick failed",
                        extra={"instance": self.instance, "error": repr(exc)},
                    )
                # Full with jobs still due: take again as soon as a run ends, not a tick later.
                freed.clear()
                waits = [asyncio.ensure_future(stop.wait())]
                if full:
                    waits.append(asyncio.ensure_future(freed.wait()))
                try:
                    await asyncio.wait(waits, timeout=self.options.tick_s, return_when=FIRST)
                finally:
                    for waiting in waits:
                        waiting.cancel()
        finally:
            if running and self.options.stop_grace_s > 0:
                logger.info(
                    "scheduler stopping: waiting for runs in progress",
                    extra={"instance": self.instance, "running": len(running)},
                )
                await asyncio.wait(set(running), timeout=self.options.stop_grace_s)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            logger.info("scheduler stopped", extra={"instance": self.instance})


class SchedulerLoop:
    """:meth:`Scheduler.run_forever` as a process component (:class:`kit.grpcx.server.Component`).

    ``start`` spawns the loop in a task; ``stop`` asks it to stop and waits until its runs
    in progress were interrupted and handed back (due at once, for another instance).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop was started and has not ended."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start ticking in a task of the running event loop."""
        if self._task is not None:
            raise RuntimeError("the scheduler loop was already started")
        self._stop.clear()
        self._task = asyncio.create_task(
            self.scheduler.run_forever(self._stop), name=f"scheduler-{self.scheduler.instance}"
        )

    async def stop(self) -> None:
        """Stop the loop and wait for it (a loop that failed is logged, not raised)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await task
        except Exception as exc:
            logger.error(
                "scheduler loop failed",
                extra={"instance": self.scheduler.instance, "error": repr(exc)},
            )
