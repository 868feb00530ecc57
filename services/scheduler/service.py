"""Job administration use cases of the scheduler service and the ports they need.

:class:`JobService` validates definitions with :mod:`services.scheduler.domain` (name, cron
expression, executor kind; for ``local`` jobs that the function is registered, for ``http``
and ``grpc`` jobs their config, a ``grpc`` method against the protos with
:mod:`services.scheduler.remote`) and works through a :class:`UnitOfWork`. It is what the
gRPC admin API and ``webookctl jobs`` call (docs/scheduler.md). The running of jobs is
:mod:`services.scheduler.scheduler`.

Pausing only stops future takes: a run in progress finishes and releases normally.
Resuming makes the job due at the next cron time after now (runs missed while paused are
skipped); ``run_now`` makes it due at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import transact
from services.scheduler.domain import (
    Execution,
    ExecutorKind,
    Job,
    JobStatus,
    Outcome,
    check_cron,
    check_executor_kind,
    check_name,
    encode_config,
    history_limit,
)
from services.scheduler.errors import (
    Reason,
    SchedulerInvalidArgument,
    SchedulerNotFound,
    SchedulerUnavailable,
)
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.remote import check_remote

T = TypeVar("T")

_WRITE_ATTEMPTS = 8
MAX_JOBS_LISTED = 1000
PURGE_BATCH = 1000

Clock = Callable[[], int]
"""Now, in Unix epoch milliseconds (injectable so tests control time)."""


def wall_clock_ms() -> int:
    """The wall clock in Unix epoch milliseconds."""
    return time.time_ns() // 1_000_000


class SchedulerRepository(Protocol):
    """Jobs, leases and executions, inside one unit of work."""

    async def add_job(
        self,
        *,
        name: str,
        cron: str,
        executor_kind: str,
        executor_config: str,
        status: JobStatus,
        next_run_ms: int,
        now_ms: int,
    ) -> Job:
        """Insert a job (``SCHEDULER_JOB_EXISTS`` when the name is taken)."""
        ...

    async def job(self, name: str) -> Job | None:
        """The job called ``name``."""
        ...

    async def job_by_id(self, job_id: int) -> Job | None:
        """The job whose id is ``job_id``."""
        ...

    async def jobs(self, *, limit: int) -> list[Job]:
        """Jobs by name."""
        ...

    async def set_status(
        self, name: str, status: JobStatus, *, next_run_ms: int | None, now_ms: int
    ) -> bool:
        """Pause or resume; whether the job exists."""
        ...

    async def set_next_run(self, name: str, *, next_run_ms: int, now_ms: int) -> bool:
        """Set the next run time; whether the job exists."""
        ...

    async def due(self, now_ms: int, *, limit: int) -> list[Job]:
        """Jobs that may be taken at ``now_ms``, the most overdue first."""
        ...

    async def take(
        self, job_id: int, *, version: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """Lease the job if still at ``version``, active, due and free; whether it applied."""
        ...

    async def renew(
        self, job_id: int, *, token: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """Extend the lease held under ``token``; whether it still was ``holder``'s."""
        ...

    async def release(
        self, job_id: int, *, token: int, holder: str, next_run_ms: int, now_ms: int
    ) -> bool:
        """Free the lease held under ``token`` with the next run time; whether it applied."""
        ...

    async def holds(self, job_id: int, *, token: int, holder: str) -> bool:
        """Whether ``holder`` still holds the job under ``token``."""
        ...

    async def due_counts(self, now_ms: int, *, late_before_ms: int) -> tuple[int, int]:
        """``(due, late)`` active jobs."""
        ...

    async def start_execution(
        self, *, job_id: int, token: int, instance: str, started_ms: int
    ) -> int:
        """Record a run that starts; its id."""
        ...

    async def finish_execution(
        self, execution_id: int, *, ended_ms: int, outcome: Outcome, error: str
    ) -> None:
        """Record how a run ended."""
        ...

    async def abandon_executions(
        self, job_id: int, *, before_token: int, ended_ms: int, error: str
    ) -> int:
        """Close the job's runs still ``running`` under a token below ``before_token`` as
        failed with ``error``; how many."""
        ...

    async def executions(self, job_id: int, *, limit: int) -> Sequence[Execution]:
        """The job's runs, newest first."""
        ...

    async def purge_executions(self, *, started_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` runs started before ``started_before_ms``; how many."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def jobs(self) -> SchedulerRepository:
        """The repository bound to this transaction."""
        ...


def _too_many_conflicts() -> SchedulerUnavailable:
    return SchedulerUnavailable(
        Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry"
    )


async def in_transaction(
    units: Callable[[], UnitOfWork], work: Callable[[UnitOfWork], Awaitable[T]]
) -> T:
    """``work`` in one committed transaction, retried on write conflicts."""
    return await transact(units, work, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS)


def _not_found(name: str) -> SchedulerNotFound:
    return SchedulerNotFound(
        Reason.JOB_NOT_FOUND, f"no job named {name!r}", metadata={"field": "name"}
    )


class JobService:
    """The job administration use cases."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        executors: ExecutorRegistry,
        *,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self._uow = unit_of_work
        self._executors = executors
        self._clock = clock

    def _check_executor(self, kind: str, config: Mapping[str, Any]) -> str:
        executor_kind = check_executor_kind(kind)
        if executor_kind is ExecutorKind.LOCAL:
            function = config.get("function")
            if not isinstance(function, str) or not function:
                raise SchedulerInvalidArgument(
                    Reason.INVALID_JOB,
                    "a local job's config needs a 'function': the registered executor's name",
                    metadata={"field": "executor_config"},
                )
            self._executors.get(function)  # SCHEDULER_UNKNOWN_EXECUTOR if not registered
        else:
            check_remote(executor_kind, config)
        return encode_config(config)

    async def add(
        self,
        name: str,
        cron: str,
        *,
        executor_kind: str,
        executor_config: Mapping[str, Any],
        paused: bool = False,
    ) -> Job:
        """Define a job, first due at the next cron time after now."""
        check_name(name)
        schedule = check_cron(cron)
        config = self._check_executor(executor_kind, executor_config)
        now = self._clock()
        status = JobStatus.PAUSED if paused else JobStatus.ACTIVE
        return await in_transaction(
            self._uow,
            lambda uow: uow.jobs.add_job(
                name=name,
                cron=cron.strip(),
                executor_kind=executor_kind,
                executor_config=config,
                status=status,
                next_run_ms=schedule.next_after_ms(now),
                now_ms=now,
            ),
        )

    async def get(self, name: str) -> Job:
        """The job called ``name``; ``SCHEDULER_JOB_NOT_FOUND`` otherwise."""
        async with self._uow() as uow:
            job = await uow.jobs.job(name)
        if job is None:
            raise _not_found(name)
        return job

    async def list(self) -> list[Job]:
        """Every job (up to 1000), by name."""
        async with self._uow() as uow:
            return await uow.jobs.jobs(limit=MAX_JOBS_LISTED)

    async def pause(self, name: str) -> None:
        """Stop taking ``name`` (a run in progress finishes)."""
        now = self._clock()
        changed = await in_transaction(
            self._uow,
            lambda uow: uow.jobs.set_status(name, JobStatus.PAUSED, next_run_ms=None, now_ms=now),
        )
        if not changed:
            raise _not_found(name)

    async def resume(self, name: str) -> None:
        """Take ``name`` again from its next cron time after now."""
        job = await self.get(name)
        now = self._clock()
        next_run = check_cron(job.cron).next_after_ms(now)
        changed = await in_transaction(
            self._uow,
            lambda uow: uow.jobs.set_status(
                name, JobStatus.ACTIVE, next_run_ms=next_run, now_ms=now
            ),
        )
        if not changed:
            raise _not_found(name)

    async def run_now(self, name: str) -> None:
        """Make ``name`` due now (an active job runs at the next tick of a free instance)."""
        now = self._clock()
        changed = await in_transaction(
            self._uow, lambda uow: uow.jobs.set_next_run(name, next_run_ms=now, now_ms=now)
        )
        if not changed:
            raise _not_found(name)

    async def history(self, name: str, *, limit: int = 0) -> Sequence[Execution]:
        """The runs of ``name``, newest first (``limit`` 0: 50; at most 500)."""
        size = history_limit(limit)
        job = await self.get(name)
        async with self._uow() as uow:
            return await uow.jobs.executions(job.id, limit=size)

    async def purge_history(self, *, older_than_ms: int) -> int:
        """Delete runs started more than ``older_than_ms`` ago, in batches; how many."""
        if older_than_ms <= 0:
            raise SchedulerInvalidArgument(
                Reason.INVALID_JOB,
                "retention must be positive",
                metadata={"field": "older_than_ms"},
            )
        cutoff = self._clock() - older_than_ms
        total = 0
        while True:
            deleted = await in_transaction(
                self._uow,
                lambda uow: uow.jobs.purge_executions(started_before_ms=cutoff, limit=PURGE_BATCH),
            )
            total += deleted
            if deleted < PURGE_BATCH:
                return total
