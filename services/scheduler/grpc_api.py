"""gRPC servicer of ``webook.scheduler.v1.SchedulerService``: proto ↔ domain translation.

The admin API over :class:`~services.scheduler.service.JobService`. Each method checks what
only the wire form can get wrong (the executor config must be a JSON object, the job name
well formed) and makes one service call, then reads the job back for the answer where the
call itself returns nothing. Refusals are :class:`kit.errors.AppError` subclasses
(:mod:`services.scheduler.errors`) that the server's error interceptor turns into status
codes with a ``google.rpc.ErrorInfo`` reason, once, at this boundary.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from services.scheduler.domain import Execution, Job, JobStatus, Outcome, check_name, encode_config
from services.scheduler.errors import Reason, SchedulerInvalidArgument
from services.scheduler.service import JobService
from webook.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS = {
    JobStatus.ACTIVE: scheduler_pb2.JOB_STATUS_ACTIVE,
    JobStatus.PAUSED: scheduler_pb2.JOB_STATUS_PAUSED,
}
_OUTCOME = {
    Outcome.RUNNING: scheduler_pb2.OUTCOME_RUNNING,
    Outcome.OK: scheduler_pb2.OUTCOME_OK,
    Outcome.FAILED: scheduler_pb2.OUTCOME_FAILED,
    Outcome.FENCED: scheduler_pb2.OUTCOME_FENCED,
}


def job_to_proto(job: Job) -> scheduler_pb2.Job:
    """The wire form of ``job`` (its config as compact JSON, keys sorted)."""
    return scheduler_pb2.Job(
        name=job.name,
        cron=job.cron,
        executor_kind=job.executor_kind,
        executor_config=encode_config(job.executor_config),
        status=_STATUS[job.status],
        version=job.version,
        next_run_ms=job.next_run_ms,
        holder=job.holder or "",
        lease_until_ms=job.lease_until_ms,
        ctime_ms=job.ctime_ms,
        utime_ms=job.utime_ms,
    )


def execution_to_proto(execution: Execution) -> scheduler_pb2.Execution:
    """The wire form of ``execution`` (``ended_ms`` 0 while running)."""
    return scheduler_pb2.Execution(
        id=execution.id,
        token=execution.token,
        instance=execution.instance,
        started_ms=execution.started_ms,
        ended_ms=execution.ended_ms or 0,
        outcome=_OUTCOME[execution.outcome],
        error=execution.error,
    )


def parse_config(text: str) -> dict[str, Any]:
    """The executor config of a request: a JSON object (empty text: ``{}``);
    ``SCHEDULER_INVALID_JOB`` otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            f"executor config is not valid JSON: {exc}",
            metadata={"field": "executor_config"},
        ) from exc
    if not isinstance(value, dict):
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            'executor config must be a JSON object, e.g. {"function": "noop"}',
            metadata={"field": "executor_config"},
        )
    return value


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Serves the scheduler's admin RPCs on top of :class:`JobService`."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    async def _job(self, name: str) -> scheduler_pb2.Job:
        return job_to_proto(await self._service.get(name))

    async def AddJob(
        self, request: scheduler_pb2.AddJobRequest, context: Context
    ) -> scheduler_pb2.AddJobResponse:
        """Define a job (validated: name, cron, executor, config)."""
        job = await self._service.add(
            request.name,
            request.cron,
            executor_kind=request.executor_kind,
            executor_config=parse_config(request.executor_config),
            paused=request.paused,
        )
        return scheduler_pb2.AddJobResponse(job=job_to_proto(job))

    async def GetJob(
        self, request: scheduler_pb2.GetJobRequest, context: Context
    ) -> scheduler_pb2.GetJobResponse:
        """One job by name."""
        return scheduler_pb2.GetJobResponse(job=await self._job(check_name(request.name)))

    async def ListJobs(
        self, request: scheduler_pb2.ListJobsRequest, context: Context
    ) -> scheduler_pb2.ListJobsResponse:
        """Every job, by name."""
        jobs = await self._service.list()
        return scheduler_pb2.ListJobsResponse(jobs=[job_to_proto(job) for job in jobs])

    async def PauseJob(
        self, request: scheduler_pb2.PauseJobRequest, context: Context
    ) -> scheduler_pb2.PauseJobResponse:
        """Stop taking the job; answers it as it is now."""
        await self._service.pause(check_name(request.name))
        return scheduler_pb2.PauseJobResponse(job=await self._job(request.name))

    async def ResumeJob(
        self, request: scheduler_pb2.ResumeJobRequest, context: Context
    ) -> scheduler_pb2.ResumeJobResponse:
        """Take the job again from its next cron time; answers it as it is now."""
        await self._service.resume(check_name(request.name))
        return scheduler_pb2.ResumeJobResponse(job=await self._job(request.name))

    async def RunNow(
        self, request: scheduler_pb2.RunNowRequest, context: Context
    ) -> scheduler_pb2.RunNowResponse:
        """Make the job due now; answers it as it is now."""
        await self._service.run_now(check_name(request.name))
        return scheduler_pb2.RunNowResponse(job=await self._job(request.name))

    async def ListExecutions(
        self, request: scheduler_pb2.ListExecutionsRequest, context: Context
    ) -> scheduler_pb2.ListExecutionsResponse:
        """The job's runs, newest first."""
        executions = await self._service.history(check_name(request.name), limit=request.limit)
        return scheduler_pb2.ListExecutionsResponse(
            executions=[execution_to_proto(e) for e in executions]
        )
