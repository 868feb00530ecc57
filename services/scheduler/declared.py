"""Declared jobs: the jobs of the scheduler's settings (``WEBOOK_SCHEDULER_JOBS``), added at start.

A deployment declares the jobs it needs (``make run`` and the Kubernetes manifest declare
the ranking job) instead of an operator adding them by hand after every fresh database.
:func:`apply_declared` adds each declared job whose name no job has yet, through
:meth:`JobService.add <services.scheduler.service.JobService.add>`, so a declared job passes
every check an operator's ``AddJob`` does. A job that exists is never changed, even when its
definition differs from the declaration (logged): what operators did to it — paused it,
added their own definition under that name first — wins over the settings.

Every instance applies the declarations when it starts, so several instances starting
together race to add the same job: the database's unique name lets one win, and the others
keep the winner's job (``SCHEDULER_JOB_EXISTS`` is expected, not a failure). Anything else
(a definition the job service refuses, the database unreachable) fails the start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.scheduler.domain import Job
from services.scheduler.errors import SchedulerAlreadyExists, SchedulerNotFound
from services.scheduler.service import JobService
from services.scheduler.settings import DeclaredJob

logger = logging.getLogger(__name__)


def _differences(job: Job, declared: DeclaredJob) -> list[str]:
    """The fields of the stored ``job`` that differ from its declaration."""
    differ = []
    if job.cron != declared.cron.strip():
        differ.append("cron")
    if job.executor_kind != declared.executor_kind:
        differ.append("executor_kind")
    if dict(job.executor_config) != declared.executor_config:
        differ.append("executor_config")
    return differ


async def _stored(jobs: JobService, name: str) -> Job | None:
    """The job called ``name``, or ``None``."""
    try:
        return await jobs.get(name)
    except SchedulerNotFound:
        return None


def _log_kept(job: Job, declared: DeclaredJob, *, raced: bool) -> None:
    logger.info(
        "declared job exists: kept as stored",
        extra={
            "job": job.name,
            "differs_in": _differences(job, declared),
            "added_concurrently": raced,
        },
    )


async def apply_declared(jobs: JobService, declared: Sequence[DeclaredJob]) -> list[str]:
    """Add each of ``declared`` whose name is free; the names added, in order.

    Idempotent: a second call (or another instance's) adds nothing. Raises what
    :meth:`JobService.add` raises for a definition it refuses.
    """
    added: list[str] = []
    for entry in declared:
        existing = await _stored(jobs, entry.name)
        if existing is not None:
            _log_kept(existing, entry, raced=False)
            continue
        try:
            job = await jobs.add(
                entry.name,
                entry.cron,
                executor_kind=entry.executor_kind,
                executor_config=entry.executor_config,
                paused=entry.paused,
            )
        except SchedulerAlreadyExists:
            # Another instance added it between the look above and this insert.
            _log_kept(await jobs.get(entry.name), entry, raced=True)
            continue
        added.append(job.name)
        logger.info(
            "declared job added",
            extra={
                "job": job.name,
                "cron": job.cron,
                "executor_kind": job.executor_kind,
                "status": job.status.name.lower(),
                "next_run_ms": job.next_run_ms,
            },
        )
    return added


class DeclaredJobs:
    """The start-up step applying the declared jobs, as a runner component.

    Registered to start before the server serves (``runner.start_before_serving``), so the
    admin API and the scheduling loop see the declared jobs from their first call and tick.
    """

    def __init__(self, jobs: JobService, declared: Sequence[DeclaredJob]) -> None:
        self._jobs = jobs
        self._declared = tuple(declared)
        # The names this instance added at its start (empty when all existed).
        self.added: list[str] = []

    async def start(self) -> None:
        """Add the declared jobs that do not exist (fails the start on a refused one)."""
        self.added = await apply_declared(self._jobs, self._declared)

    def stop(self) -> None:
        """Nothing runs after the start: the jobs added stay, as any other job."""
