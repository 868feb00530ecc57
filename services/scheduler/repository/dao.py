"""SQL schema and queries of the scheduler service (SQLAlchemy 2.0, async).

Tables:

- ``scheduler_jobs``: one row per job, unique on ``name``. ``version`` is the fencing
  token: every take bumps it. ``holder``/``lease_until_ms`` say which instance runs the job
  and until when (``NULL``/0 when free). Index ``(status, next_run_ms)`` finds due jobs
  (equality, then the range).
- ``scheduler_executions``: one row per run: the job, the token it ran under, the instance,
  start and end, outcome and error text. Index ``(job_id, id)`` serves a job's history,
  newest first; ``started_ms`` serves the retention clean-up.

Every state change of a lease is one conditional ``UPDATE`` whose row count says whether it
applied: a take matches only the ``version`` the taker read, still due and not validly
leased; a renewal and a release match only the taker's token and instance. Both databases
serialise these on the job's row (InnoDB row lock with a current read; SQLite's single
writer), so of several instances racing for one job exactly one sees row count 1, and a
holder whose token is stale changes nothing.

:class:`SchedulerDAO` works on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Index,
    SmallInteger,
    String,
    Text,
    case,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.sql import SessionDAO, big_id, exact_string, rowcount, service_metadata, table_args
from services.scheduler.domain import JobStatus, Outcome


class Base(DeclarativeBase):
    """Declarative base of the scheduler service's tables."""

    metadata = service_metadata()


class JobRow(Base):
    """One row of ``scheduler_jobs``."""

    __tablename__ = "scheduler_jobs"
    __table_args__ = table_args(
        Index("ix_scheduler_jobs_status_next_run_ms", "status", "next_run_ms"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(exact_string(128), unique=True)
    cron: Mapped[str] = mapped_column(String(256))
    executor_kind: Mapped[str] = mapped_column(String(16))
    executor_config: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(SmallInteger)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    next_run_ms: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ctime: Mapped[int] = mapped_column(BigInteger)
    utime: Mapped[int] = mapped_column(BigInteger)


class ExecutionRow(Base):
    """One row of ``scheduler_executions``."""

    __tablename__ = "scheduler_executions"
    __table_args__ = table_args(
        Index("ix_scheduler_executions_job_id_id", "job_id", "id"),
        Index("ix_scheduler_executions_started_ms", "started_ms"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(BigInteger)
    token: Mapped[int] = mapped_column(BigInteger)
    instance: Mapped[str] = mapped_column(String(128))
    started_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text)


class SchedulerDAO(SessionDAO):
    """Queries on the scheduler tables within the caller's session; never commits."""

    # Jobs -----------------------------------------------------------------------------

    async def insert_job(self, row: JobRow) -> JobRow:
        """Insert a job (``IntegrityError`` when the name is taken)."""
        return await self.insert(row)

    async def job_by_name(self, name: str) -> JobRow | None:
        """The job called ``name``."""
        return await self._session.scalar(select(JobRow).where(JobRow.name == name))

    async def job_by_id(self, job_id: int) -> JobRow | None:
        """The job whose id is ``job_id``."""
        return await self.get_row(JobRow, job_id)

    async def jobs(self, *, limit: int) -> Sequence[JobRow]:
        """Jobs by name."""
        return (
            await self._session.scalars(select(JobRow).order_by(JobRow.name).limit(limit))
        ).all()

    async def set_status(
        self, name: str, status: JobStatus, *, next_run_ms: int | None, utime: int
    ) -> bool:
        """Set ``name``'s status (and next run time, if given); whether the job exists."""
        values: dict[str, int] = {"status": int(status), "utime": utime}
        if next_run_ms is not None:
            values["next_run_ms"] = next_run_ms
        result = await self._session.execute(
            sql_update(JobRow).where(JobRow.name == name).values(**values)
        )
        return rowcount(result) == 1

    async def set_next_run(self, name: str, *, next_run_ms: int, utime: int) -> bool:
        """Make ``name`` due at ``next_run_ms``; whether the job exists."""
        result = await self._session.execute(
            sql_update(JobRow)
            .where(JobRow.name == name)
            .values(next_run_ms=next_run_ms, utime=utime)
        )
        return rowcount(result) == 1

    # Leases ---------------------------------------------------------------------------

    async def due(self, now_ms: int, *, limit: int) -> Sequence[JobRow]:
        """Active jobs due at ``now_ms`` and not validly leased, the most overdue first."""
        stmt = (
            select(JobRow)
            .where(
                JobRow.status == int(JobStatus.ACTIVE),
                JobRow.next_run_ms <= now_ms,
                or_(JobRow.holder.is_(None), JobRow.lease_until_ms < now_ms),
            )
            .order_by(JobRow.next_run_ms, JobRow.id)
            .limit(limit)
        )
        return (await self._session.scalars(stmt)).all()

    async def take(
        self, job_id: int, *, version: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """Lease the job if it is still as read (``version``), active, due and not validly
        leased; bumps the version (the new one is the fencing token). Whether it applied."""
        result = await self._session.execute(
            sql_update(JobRow)
            .where(
                JobRow.id == job_id,
                JobRow.version == version,
                JobRow.status == int(JobStatus.ACTIVE),
                JobRow.next_run_ms <= now_ms,
                or_(JobRow.holder.is_(None), JobRow.lease_until_ms < now_ms),
            )
            .values(
                holder=holder,
                lease_until_ms=lease_until_ms,
                version=JobRow.version + 1,
                utime=now_ms,
            )
        )
        return rowcount(result) == 1

    async def renew(
        self, job_id: int, *, token: int, holder: str, lease_until_ms: int, now_ms: int
    ) -> bool:
        """Extend the lease held under ``token`` by ``holder``; whether it still was theirs."""
        result = await self._session.execute(
            sql_update(JobRow)
            .where(JobRow.id == job_id, JobRow.version == token, JobRow.holder == holder)
            .values(lease_until_ms=lease_until_ms, utime=now_ms)
        )
        return rowcount(result) == 1

    async def release(
        self, job_id: int, *, token: int, holder: str, next_run_ms: int, now_ms: int
    ) -> bool:
        """Free the lease held under ``token`` and set the next run; whether it was theirs."""
        result = await self._session.execute(
            sql_update(JobRow)
            .where(JobRow.id == job_id, JobRow.version == token, JobRow.holder == holder)
            .values(holder=None, lease_until_ms=0, next_run_ms=next_run_ms, utime=now_ms)
        )
        return rowcount(result) == 1

    async def lease_of(self, job_id: int) -> tuple[int, str | None] | None:
        """``(version, holder)`` of the job, ``None`` if it was deleted."""
        row = (
            await self._session.execute(
                select(JobRow.version, JobRow.holder).where(JobRow.id == job_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def due_counts(self, now_ms: int, *, late_before_ms: int) -> tuple[int, int]:
        """``(due, late)``: active jobs due at ``now_ms``, and those due before
        ``late_before_ms`` (whether leased or not)."""
        active_due = (JobRow.status == int(JobStatus.ACTIVE)) & (JobRow.next_run_ms <= now_ms)
        row = (
            await self._session.execute(
                select(
                    func.sum(case((active_due, 1), else_=0)),
                    func.sum(
                        case((active_due & (JobRow.next_run_ms < late_before_ms), 1), else_=0)
                    ),
                ).select_from(JobRow)
            )
        ).one()
        return int(row[0] or 0), int(row[1] or 0)

    # Executions -----------------------------------------------------------------------

    async def insert_execution(
        self, *, job_id: int, token: int, instance: str, started_ms: int
    ) -> int:
        """Record a run that starts; its id."""
        row = await self.insert(
            ExecutionRow(
                job_id=job_id,
                token=token,
                instance=instance,
                started_ms=started_ms,
                ended_ms=None,
                outcome=Outcome.RUNNING.value,
                error="",
            )
        )
        return row.id

    async def finish_execution(
        self, execution_id: int, *, ended_ms: int, outcome: Outcome, error: str
    ) -> None:
        """Record how a run ended."""
        await self._session.execute(
            sql_update(ExecutionRow)
            .where(ExecutionRow.id == execution_id)
            .values(ended_ms=ended_ms, outcome=outcome.value, error=error)
        )

    async def abandon_executions(
        self, job_id: int, *, before_token: int, ended_ms: int, error: str
    ) -> int:
        """Close the job's runs still ``running`` under a token below ``before_token`` (their
        holder died or lost its lease) as failed with ``error``; how many."""
        result = await self._session.execute(
            sql_update(ExecutionRow)
            .where(
                ExecutionRow.job_id == job_id,
                ExecutionRow.outcome == Outcome.RUNNING.value,
                ExecutionRow.token < before_token,
            )
            .values(ended_ms=ended_ms, outcome=Outcome.FAILED.value, error=error)
        )
        return rowcount(result)

    async def executions(self, job_id: int, *, limit: int) -> Sequence[ExecutionRow]:
        """The job's runs, newest first."""
        stmt = (
            select(ExecutionRow)
            .where(ExecutionRow.job_id == job_id)
            .order_by(ExecutionRow.id.desc())
            .limit(limit)
        )
        return (await self._session.scalars(stmt)).all()

    async def purge_executions(self, *, started_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` runs started before ``started_before_ms``; how many.

        The ids are selected first: MySQL refuses ``LIMIT`` in an ``IN`` subquery, and
        SQLite has no ``DELETE ... LIMIT`` by default.
        """
        ids = (
            await self._session.scalars(
                select(ExecutionRow.id)
                .where(ExecutionRow.started_ms < started_before_ms)
                .order_by(ExecutionRow.started_ms)
                .limit(limit)
            )
        ).all()
        if not ids:
            return 0
        result = await self._session.execute(delete(ExecutionRow).where(ExecutionRow.id.in_(ids)))
        return rowcount(result)
