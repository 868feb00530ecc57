"""Storage adapter of the scheduler service: jobs and executions in SQL.

- :class:`SqlSchedulerRepository` implements
  :class:`services.scheduler.service.SchedulerRepository` over
  :class:`~services.scheduler.repository.dao.SchedulerDAO`, turning rows into the domain's
  values (:mod:`services.scheduler.domain`).
- :class:`SqlUnitOfWork` implements :class:`services.scheduler.service.UnitOfWork`; a job
  name taken at insert becomes ``SCHEDULER_JOB_EXISTS``; deadlocks and lock timeouts leave
  it as :class:`kit.sql.WriteConflict` (retried by the callers).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import SqlUnitOfWork as BaseSqlUnitOfWork
from kit.sql import is_unique_violation, row_mapper
from services.scheduler.domain import Execution, Job, JobStatus, Outcome, decode_config
from services.scheduler.errors import Reason, SchedulerAlreadyExists
from services.scheduler.repository.dao import Base, ExecutionRow, JobRow, SchedulerDAO

__all__ = ["Base", "SqlSchedulerRepository", "SqlUnitOfWork"]

_job = row_mapper(
    Job,
    JobRow,
    renamed={"ctime_ms": "ctime", "utime_ms": "utime"},
    converted={"status": JobStatus, "executor_config": decode_config},
)
_execution = row_mapper(Execution, ExecutionRow, converted={"outcome": Outcome})


class SqlSchedulerRepository:
    """Jobs, leases and executions in SQL, inside one unit of work's session."""

    def __init__(self, dao: SchedulerDAO) -> None:
        self._dao = dao

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
        """Insert a job; ``SCHEDULER_JOB_EXISTS`` when the name is taken."""
        row = JobRow(
            name=name,
            cron=cron,
            executor_kind=executor_kind,
            executor_config=executor_config,
            status=int(status),
            version=0,
            next_run_ms=next_run_ms,
            holder=None,
            lease_until_ms=0,
            ctime=now_ms,
            utime=now_ms,
        )
        try:
            return _job(await self._dao.insert_job(row))
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise SchedulerAlreadyExists(
                    Reason.JOB_EXISTS, f"a job named {name!r} exists", metadata={"field": "name"}
                ) from exc
            raise

    async def job(self, name: str) -> Job | None:
        """The job called ``name``."""
        row = await self._dao.job_by_name(name)
        return None if row is None else _job(row)

    async def job_by_id(self, job_id: int) -> Job | None:
        """The job whose id is ``job_id``."""
        row = await self._dao.job_by_id(job_id)
        return None if row is None else _job(row)

    async def jobs(self, *, limit: int) -> list[Job]:
        """Jobs by name."""
        return [_job(row) for row in await self._dao.jobs(limit=limit)]

    async def set_status(
        self, name: str, status: JobStatus, *, next_run_ms: int | None, now_ms: int
    ) -> bool:
        """Pause or resume ``name``; whether it exists."""
        return await self._dao.set_status(name, status, next_run_ms=next_run_ms, utime=now_ms)

    async def set_next_run(self, name: str, *, next_run_ms: int, now_ms: int) -> bool:
        """Make ``name`` due at ``next_run_ms``; whether it exists."""
        return await self._dao.set_next_run(name, next_run_ms=next_run_ms, utime=now_ms)

    async def due(self, now_ms: int, *, limit: int) -> list[Job]:
        """Jobs that may be taken at ``now_ms``, the most overdue first."""
        return [_job(row) for row in await self._dao.due(now_ms, limit=limit)]

    async def take(
        self, job_id: int, *, version: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """The conditional take (:meth:`SchedulerDAO.take`)."""
        return await self._dao.take(
            job_id, version=version, holder=holder, lease_until_ms=lease_until_ms, now_ms=now_ms
        )

    async def renew(
        self, job_id: int, *, token: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """The conditional renewal (:meth:`SchedulerDAO.renew`)."""
        return await self._dao.renew(
            job_id, token=token, holder=holder, lease_until_ms=lease_until_ms, now_ms=now_ms
        )

    async def release(
        self, job_id: int, *, token: int, holder: str, next_run_ms: int, now_ms: int
    ) -> bool:
        """The conditional release (:meth:`SchedulerDAO.release`)."""
        return await self._dao.release(
            job_id, token=token, holder=holder, next_run_ms=next_run_ms, now_ms=now_ms
        )

    async def holds(self, job_id: int, *, token: int, holder: str) -> bool:
        """Whether ``holder`` still holds the job under ``token``."""
        return await self._dao.lease_of(job_id) == (token, holder)

    async def due_counts(self, now_ms: int, *, late_before_ms: int) -> tuple[int, int]:
        """``(due, late)`` active jobs (:meth:`SchedulerDAO.due_counts`)."""
        return await self._dao.due_counts(now_ms, late_before_ms=late_before_ms)

    async def start_execution(
        self, *, job_id: int, token: int, instance: str, started_ms: int
    ) -> int:
        """Record a run that starts; its id."""
        return await self._dao.insert_execution(
            job_id=job_id, token=token, instance=instance, started_ms=started_ms
        )

    async def finish_execution(
        self, execution_id: int, *, ended_ms: int, outcome: Outcome, error: str
    ) -> None:
        """Record how a run ended."""
        await self._dao.finish_execution(
            execution_id, ended_ms=ended_ms, outcome=outcome, error=error
        )

    async def abandon_executions(
        self, job_id: int, *, before_token: int, ended_ms: int, error: str
    ) -> int:
        """Close runs left ``running`` by an earlier holder as failed; how many."""
        return await self._dao.abandon_executions(
            job_id, before_token=before_token, ended_ms=ended_ms, error=error
        )

    async def executions(self, job_id: int, *, limit: int) -> Sequence[Execution]:
        """The job's runs, newest first."""
        return [_execution(row) for row in await self._dao.executions(job_id, limit=limit)]

    async def purge_executions(self, *, started_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` runs started before ``started_before_ms``; how many."""
        return await self._dao.purge_executions(started_before_ms=started_before_ms, limit=limit)


class SqlUnitOfWork(BaseSqlUnitOfWork[SqlSchedulerRepository]):
    """One SQL transaction with a :class:`SqlSchedulerRepository` bound to it."""

    @property
    def jobs(self) -> SqlSchedulerRepository:
        """The repository of this unit of work (only inside ``async with``)."""
        return self.repository

    def open_repository(self, session: AsyncSession) -> SqlSchedulerRepository:
        return SqlSchedulerRepository(SchedulerDAO(session))
