"""``webookctl jobs``: the scheduler's jobs, through its gRPC admin API.

``list``, ``add``, ``pause``, ``resume``, ``run-now`` and ``history`` call
``webook.scheduler.v1.SchedulerService`` (docs/scheduler.md). Its methods accept the
operator's certificate only (``spiffe://webook/operator``; ``--tls-cert``/``--tls-key``
with the CA, ``--tls-ca``; a local stack issues it as ``.run/pki/operator.pem``); no
workload's certificate is accepted. The service is found through etcd like any client, or
at ``--address`` (``WEBOOKCTL_SCHEDULER_ADDRESS``).

The scheduler validates every definition: a bad cron expression or an executor it does not
have is refused with its reason and message (``SCHEDULER_INVALID_CRON: bad cron expression
'61 * * * *': minute field: 61 is out of range 0-59``), exit status 1; a ``--config`` that
is not a JSON object is a usage error (2) before anything is sent.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import app_error_from_rpc
from kit.registry import EtcdRegistry, EtcdRegistryConfig
from kit.security.tls import ClientTls, TlsFiles, TlsMaterialError
from webook.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from webookctl.command import Context, command_group, leaf
from webookctl.errors import CommandFailed, UsageError
from webookctl.output import Outcome, moment, table
from webookctl.settings import CtlSettings

SCHEDULER: Final = "scheduler"
# The identity whose certificate SchedulerService accepts (its proto's callers).
OPERATOR: Final = "operator"
STATUS_PREFIX: Final = "JOB_STATUS_"
OUTCOME_PREFIX: Final = "OUTCOME_"

if TYPE_CHECKING:
    from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceAsyncStub as Stub

T = TypeVar("T")


def _clients(settings: CtlSettings, address: str) -> ServiceClients:
    """Channels to the scheduler: at ``address``, else found in etcd; TLS when set."""
    files = TlsFiles.from_settings(settings)
    try:
        # The client is gone long before a certificate rotation: no need to watch the files.
        tls = ClientTls(files, reload_seconds=3600) if files is not None else None
    except TlsMaterialError as exc:
        raise CommandFailed(str(exc)) from exc
    registry = None
    if not address:
        if not settings.etcd_endpoints:
            raise UsageError("no scheduler address: pass --address HOST:PORT or etcd endpoints")
        registry = EtcdRegistry(
            EtcdRegistryConfig(
                endpoint=settings.etcd_endpoints[0],
                prefix=settings.registry_prefix,
                username=settings.etcd_username,
                password=settings.etcd_password.get_secret_value(),
            )
        )
    peers = {SCHEDULER: address} if address else None
    return ServiceClients(registry=registry, peers=peers, tls=tls)


async def _call(
    context: Context,
    args: argparse.Namespace,
    method: str,
    call: Callable[[Stub, float], Awaitable[T]],
) -> T:
    """``call(stub, timeout)`` on the scheduler; a failure as one :class:`CommandFailed` line."""
    settings = context.settings
    clients = _clients(settings, args.address or settings.scheduler_address)
    try:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(await clients.channel(SCHEDULER))
        return await call(stub, settings.timeout)
    except grpc.aio.AioRpcError as exc:
        error = app_error_from_rpc(exc)
        hint = (
            f" (it accepts the {OPERATOR} certificate only: --tls-cert/--tls-key)"
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED
            else ""
        )
        raise CommandFailed(
            f"scheduler {method}: {exc.code().name} {error.reason}: {error.message}{hint}"
        ) from exc
    except AppError as exc:
        raise CommandFailed(f"scheduler {method}: {exc.reason}: {exc.message}") from exc
    finally:
        await clients.close()


def job_data(job: scheduler_pb2.Job) -> dict[str, Any]:
    """A job as the ``--json`` document shows it (its config as a JSON object)."""
    return {
        "name": job.name,
        "cron": job.cron,
        "executor_kind": job.executor_kind,
        "executor_config": json.loads(job.executor_config or "{}"),
        "status": scheduler_pb2.JobStatus.Name(job.status).removeprefix(STATUS_PREFIX).lower(),
        "version": job.version,
        "next_run_ms": job.next_run_ms,
        "holder": job.holder,
        "lease_until_ms": job.lease_until_ms,
        "ctime_ms": job.ctime_ms,
        "utime_ms": job.utime_ms,
    }


def execution_data(execution: scheduler_pb2.Execution) -> dict[str, Any]:
    """A run as the ``--json`` document shows it (``ended_ms`` 0 while running)."""
    outcome = scheduler_pb2.Outcome.Name(execution.outcome).removeprefix(OUTCOME_PREFIX)
    return {
        "id": execution.id,
        "token": execution.token,
        "instance": execution.instance,
        "started_ms": execution.started_ms,
        "ended_ms": execution.ended_ms,
        "outcome": outcome.lower(),
        "error": execution.error,
    }


def _executor(job: dict[str, Any]) -> str:
    config = job["executor_config"]
    function = config.get("function") if isinstance(config, dict) else None
    return f"{job['executor_kind']}:{function}" if function else str(job["executor_kind"])


def _job_line(job: dict[str, Any]) -> str:
    """One line about a job: its state and when it runs next."""
    line = f"job {job['name']} is {job['status']}; cron {job['cron']!r}"
    if job["status"] == "active":
        line += f"; next run {moment(job['next_run_ms'])}"
    if job["holder"]:
        line += f"; running on {job['holder']} (token {job['version']})"
    return line


async def list_jobs(context: Context, args: argparse.Namespace) -> Outcome:
    """``jobs list``: every job, by name."""
    answer = await _call(
        context,
        args,
        "ListJobs",
        lambda stub, timeout: stub.ListJobs(scheduler_pb2.ListJobsRequest(), timeout=timeout),
    )
    jobs = [job_data(job) for job in answer.jobs]
    rows = [
        [
            job["name"],
            job["status"],
            job["cron"],
            _executor(job),
            moment(job["next_run_ms"]) if job["status"] == "active" else "-",
            job["holder"] or "-",
            str(job["version"]),
        ]
        for job in jobs
    ]
    headers = ["NAME", "STATUS", "CRON", "EXECUTOR", "NEXT RUN", "RUNNING ON", "TOKEN"]
    text = table(headers, rows) if rows else "no jobs"
    return Outcome({"jobs": jobs}, text)


def _config(args: argparse.Namespace) -> str:
    """The executor config of ``jobs add``: ``--config`` (a JSON object) with ``--function``."""
    config: dict[str, Any] = {}
    if args.config:
        try:
            value = json.loads(args.config)
        except ValueError as exc:
            raise UsageError(f"--config is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise UsageError('--config must be a JSON object, e.g. {"message": "hi"}')
        config = value
    if args.function:
        config["function"] = args.function
    return json.dumps(config, ensure_ascii=False, sort_keys=True)


async def add_job(context: Context, args: argparse.Namespace) -> Outcome:
    """``jobs add NAME CRON --function F``: define a job."""
    request = scheduler_pb2.AddJobRequest(
        name=args.name,
        cron=args.cron,
        executor_kind=args.kind,
        executor_config=_config(args),
        paused=args.paused,
    )
    answer = await _call(
        context, args, "AddJob", lambda stub, timeout: stub.AddJob(request, timeout=timeout)
    )
    job = job_data(answer.job)
    return Outcome({"job": job}, f"added: {_job_line(job)}")


JobAnswer = (
    scheduler_pb2.PauseJobResponse | scheduler_pb2.ResumeJobResponse | scheduler_pb2.RunNowResponse
)
# The call a steering command makes: stub, job name, timeout.
Send: TypeAlias = "Callable[[Stub, str, float], Awaitable[JobAnswer]]"


def _steer(method: str, verb: str, send: Send) -> Callable[..., Awaitable[Outcome]]:
    """The handler of ``jobs pause|resume|run-now NAME``: ``send`` answers the job."""

    async def handler(context: Context, args: argparse.Namespace) -> Outcome:
        answer = await _call(context, args, method, lambda stub, t: send(stub, args.name, t))
        job = job_data(answer.job)
        return Outcome({"job": job}, f"{verb}: {_job_line(job)}")

    handler.__doc__ = f"``jobs`` command calling {method}: the job {verb}."
    return handler


# Command, method, verb, description, call.
STEERING: Final[tuple[tuple[str, str, str, str, Send], ...]] = (
    (
        "pause",
        "PauseJob",
        "paused",
        "Stop taking a job (a run in progress finishes).",
        lambda stub, name, t: stub.PauseJob(scheduler_pb2.PauseJobRequest(name=name), timeout=t),
    ),
    (
        "resume",
        "ResumeJob",
        "resumed",
        "Take a paused job again, from its next cron time (missed runs are skipped).",
        lambda stub, name, t: stub.ResumeJob(scheduler_pb2.ResumeJobRequest(name=name), timeout=t),
    ),
    (
        "run-now",
        "RunNow",
        "due now",
        "Make a job due now: an active job runs at the next tick of a free instance.",
        lambda stub, name, t: stub.RunNow(scheduler_pb2.RunNowRequest(name=name), timeout=t),
    ),
)


async def history(context: Context, args: argparse.Namespace) -> Outcome:
    """``jobs history NAME``: the job's runs, newest first."""
    request = scheduler_pb2.ListExecutionsRequest(name=args.name, limit=args.limit)
    answer = await _call(
        context,
        args,
        "ListExecutions",
        lambda stub, timeout: stub.ListExecutions(request, timeout=timeout),
    )
    runs = [execution_data(e) for e in answer.executions]
    rows = [
        [
            str(run["id"]),
            moment(run["started_ms"]),
            f"{(run['ended_ms'] - run['started_ms']) / 1000:.3f}s" if run["ended_ms"] else "-",
            run["outcome"],
            str(run["token"]),
            run["instance"],
            run["error"] or "-",
        ]
        for run in runs
    ]
    headers = ["ID", "STARTED", "TOOK", "OUTCOME", "TOKEN", "INSTANCE", "ERROR"]
    text = table(headers, rows) if rows else f"job {args.name} has not run yet"
    return Outcome({"name": args.name, "executions": runs}, text)


def _address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        metavar="HOST:PORT[,...]",
        help="the scheduler service (default: WEBOOKCTL_SCHEDULER_ADDRESS, else etcd discovery)",
    )


NEEDS = (
    "\n\nNeeds the operator certificate (a local stack's: .run/pki/operator.pem and\n"
    "operator-key.pem, with .run/pki/ca.pem)."
)


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``jobs list|add|pause|resume|run-now|history``."""
    group = command_group(subcommands, "jobs", "the scheduler's cron jobs and their runs")

    _address(leaf(group, "list", "List every job, by name." + NEEDS, list_jobs, common))

    add = leaf(
        group,
        "add",
        "Define a job, first due at the next cron time after now.\n\n"
        "CRON: five fields, UTC (minute hour day-of-month month day-of-week), or @hourly,\n"
        "@daily, @weekly, @monthly, @yearly. A local job runs a function registered in the\n"
        "scheduler process (built in: noop, log)." + NEEDS,
        add_job,
        common,
    )
    add.add_argument("name", help="1-128 of A-Za-z0-9._:-, starting with a letter or digit")
    add.add_argument("cron", help="e.g. '*/5 * * * *' (quote it)")
    add.add_argument("--function", help="the registered function a local job runs")
    add.add_argument(
        "--config", metavar="JSON", help="the executor's config, a JSON object (with --function)"
    )
    add.add_argument("--kind", default="local", help="executor kind (default: local)")
    add.add_argument("--paused", action="store_true", help="add it paused")
    _address(add)

    for name, method, verb, description, send in STEERING:
        parser = leaf(group, name, description + NEEDS, _steer(method, verb, send), common)
        parser.add_argument("name", help="the job")
        _address(parser)

    runs = leaf(group, "history", "A job's runs, newest first." + NEEDS, history, common)
    runs.add_argument("name", help="the job")
    runs.add_argument("--limit", type=int, default=20, help="runs shown, 1..500 (default 20)")
    _address(runs)
