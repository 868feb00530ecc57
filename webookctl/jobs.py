"""``webookctl jobs``: the scheduler's jobs, through its gRPC admin API.

``list``, ``add``, ``pause``, ``resume``, ``run-now`` and ``history`` call
``webook.scheduler.v1.SchedulerService`` (docs/scheduler.md). Its methods accept the
operator's certificate only (``spiffe://webook/operator``; ``--tls-cert``/``--tls-key``
with the CA, ``--tls-ca``; a local stack issues it as ``.run/pki/operator.pem``); no
workload's certificate is accepted. The service is found through etcd like any client, or
at ``--address`` (``WEBOOKCTL_SCHEDULER_ADDRESS``).

``jobs add`` builds the executor's config from flags per kind (``--kind``): ``local``
``--function``; ``http`` ``--url`` (required), ``--body JSON``, ``--retries``; ``grpc``
``--service`` and ``--method`` (required), ``--request JSON``; both remote kinds
``--job-timeout`` (``timeout_s``; ``--timeout`` is webookctl's own call timeout). The flags
are laid over ``--config``, a JSON object holding the same keys, so either may carry them.
A flag of another kind, a missing required key, or a ``--config``/``--body``/``--request``
that is not a JSON object is a usage error (2) before anything is sent. ``list`` and
``history`` show the executor as ``local:<function>``, ``http:<url>`` or
``grpc:<service>/<method>``.

The scheduler validates every definition: a bad cron expression, an executor it does not
have or a config it refuses is refused with its reason and message
(``SCHEDULER_INVALID_CRON: bad cron expression '61 * * * *': minute field: 61 is out of
range 0-59``), exit status 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from webook.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from webookctl.command import Context, command_group, leaf
from webookctl.errors import UsageError
from webookctl.output import Outcome, moment, table
from webookctl.remote import reported, service_clients

SCHEDULER: Final = "scheduler"
STATUS_PREFIX: Final = "JOB_STATUS_"
OUTCOME_PREFIX: Final = "OUTCOME_"

if TYPE_CHECKING:
    from webook.scheduler.v1.scheduler_pb2_grpc import SchedulerServiceAsyncStub as Stub

T = TypeVar("T")


async def _call(
    context: Context,
    args: argparse.Namespace,
    method: str,
    call: Callable[[Stub, float], Awaitable[T]],
) -> T:
    """``call(stub, timeout)`` on the scheduler; a failure as one :class:`CommandFailed` line."""
    settings = context.settings
    clients = service_clients(settings, SCHEDULER, args.address or settings.scheduler_address)
    try:
        async with reported(SCHEDULER, method):
            stub = scheduler_pb2_grpc.SchedulerServiceStub(await clients.channel(SCHEDULER))
            return await call(stub, settings.timeout)
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


def executor_label(kind: str, config: object) -> str:
    """What a job runs, in one word: ``local:<function>``, ``http:<url>``,
    ``grpc:<service>/<method>``; the bare kind when its config lacks those keys."""
    if not isinstance(config, dict):
        return kind
    if kind == "http" and isinstance(config.get("url"), str):
        return f"http:{config['url']}"
    service, method = config.get("service"), config.get("method")
    if kind == "grpc" and isinstance(service, str) and isinstance(method, str):
        return f"grpc:{service}/{method.removeprefix('/')}"
    function = config.get("function")
    return f"{kind}:{function}" if isinstance(function, str) and function else kind


def _executor(job: dict[str, Any]) -> str:
    return executor_label(job["executor_kind"], job["executor_config"])


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


@dataclass(frozen=True)
class ConfigFlag:
    """A flag of ``jobs add`` setting one key of the executor's config."""

    dest: str
    key: str
    # The executor kinds it belongs to.
    kinds: tuple[str, ...]
    # Whether its value is a JSON object given as text (``--body``, ``--request``).
    json_object: bool = False

    @property
    def flag(self) -> str:
        """The option as typed (``--job-timeout``)."""
        return "--" + self.dest.replace("_", "-")


CONFIG_FLAGS: Final[tuple[ConfigFlag, ...]] = (
    ConfigFlag("function", "function", ("local",)),
    ConfigFlag("url", "url", ("http",)),
    ConfigFlag("body", "body", ("http",), json_object=True),
    ConfigFlag("retries", "retries", ("http",)),
    ConfigFlag("service", "service", ("grpc",)),
    ConfigFlag("method", "method", ("grpc",)),
    ConfigFlag("request", "request", ("grpc",), json_object=True),
    ConfigFlag("job_timeout", "timeout_s", ("http", "grpc")),
)
# The config keys each remote kind cannot do without (a local job's function is checked by
# the scheduler, which knows what is registered).
REQUIRED_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "http": ("url",),
    "grpc": ("service", "method"),
}


def _json_object(flag: str, text: str, example: str) -> dict[str, Any]:
    """``text`` as a JSON object; a usage error naming ``flag`` otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object, e.g. {example}")
    return value


def _flag_value(option: ConfigFlag, value: Any) -> Any:
    if option.json_object:
        return _json_object(option.flag, value, '{"day": 1}')
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 120, not 120.0, as a person would write it in --config
    return value


def executor_config(args: argparse.Namespace) -> dict[str, Any]:
    """The executor config of ``jobs add``: ``--config`` (a JSON object) with the flags of
    ``--kind`` laid over it; a :class:`UsageError` for a flag of another kind or a required
    key of the kind given neither way."""
    config: dict[str, Any] = {}
    if args.config:
        config = _json_object("--config", args.config, '{"message": "hi"}')
    kind = args.kind
    for option in CONFIG_FLAGS:
        value = getattr(args, option.dest)
        if value is None:
            continue
        if kind not in option.kinds:
            kinds = " or ".join(f"--kind {k}" for k in option.kinds)
            raise UsageError(f"{option.flag} is for {kinds}, not --kind {kind}")
        config[option.key] = _flag_value(option, value)
    for key in REQUIRED_KEYS.get(kind, ()):
        if key not in config:
            flag = next(o.flag for o in CONFIG_FLAGS if o.key == key)
            raise UsageError(f'--kind {kind} needs {flag} (or "{key}" in --config)')
    return config


def _config(args: argparse.Namespace) -> str:
    """The executor config of ``jobs add`` as the JSON text sent."""
    return json.dumps(executor_config(args), ensure_ascii=False, sort_keys=True)


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
    """``jobs history NAME``: what the job runs, and its runs, newest first."""
    request = scheduler_pb2.ListExecutionsRequest(name=args.name, limit=args.limit)

    async def runs_and_job(
        stub: Stub, seconds: float
    ) -> tuple[scheduler_pb2.ListExecutionsResponse, scheduler_pb2.Job]:
        # The runs first: an unknown job is refused there, as before the executor was shown.
        answer = await stub.ListExecutions(request, timeout=seconds)
        found = await stub.GetJob(scheduler_pb2.GetJobRequest(name=args.name), timeout=seconds)
        return answer, found.job

    answer, job = await _call(context, args, "ListExecutions", runs_and_job)
    executor = executor_label(job.executor_kind, json.loads(job.executor_config or "{}"))
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
    text = (
        f"runs of job {args.name} ({executor}), newest first:\n{table(headers, rows)}"
        if rows
        else f"job {args.name} ({executor}) has not run yet"
    )
    return Outcome({"name": args.name, "executor": executor, "executions": runs}, text)


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
        "scheduler process (built in: noop, log); an http job POSTs to a URL; a grpc job\n"
        "calls a method of a service found through discovery. Both remote kinds send the\n"
        "run's fencing token for the callee to check.\n\n"
        "  jobs add beat @hourly --function noop\n"
        "  jobs add hook '*/10 * * * *' --kind http --url https://hooks.example/run \\\n"
        "      --retries 3 --job-timeout 30\n"
        "  jobs add ranking.refresh '*/5 * * * *' --kind grpc --service ranking \\\n"
        "      --method webook.ranking.v1.RankingService/RunRanking --job-timeout 120" + NEEDS,
        add_job,
        common,
    )
    add.add_argument("name", help="1-128 of A-Za-z0-9._:-, starting with a letter or digit")
    add.add_argument("cron", help="e.g. '*/5 * * * *' (quote it)")
    add.add_argument("--kind", default="local", help="executor kind: local (default), http or grpc")
    add.add_argument(
        "--config",
        metavar="JSON",
        help="the executor's config, a JSON object; the flags below are laid over it",
    )
    add.add_argument("--paused", action="store_true", help="add it paused")
    local = add.add_argument_group("--kind local")
    local.add_argument("--function", help="the registered function the job runs")
    http = add.add_argument_group("--kind http (POST, JSON body with the job and its token)")
    http.add_argument("--url", help="http:// or https:// URL to POST to (required)")
    http.add_argument("--body", metavar="JSON", help="a JSON object passed in the body's 'body'")
    http.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="more attempts on 5xx, timeouts, connection errors: 0..5 (default 2)",
    )
    rpc = add.add_argument_group("--kind grpc (through discovery, mutual TLS)")
    rpc.add_argument("--service", help="the service as discovery knows it, e.g. ranking (required)")
    rpc.add_argument(
        "--method",
        metavar="PKG.SERVICE/METHOD",
        help="e.g. webook.ranking.v1.RankingService/RunRanking (required)",
    )
    rpc.add_argument("--request", metavar="JSON", help="the request message as a JSON object")
    remote = add.add_argument_group("--kind http or grpc")
    remote.add_argument(
        "--job-timeout",
        type=float,
        metavar="SECONDS",
        help="http: per attempt, up to 300 (default 10); grpc: up to 3600 (default 60)",
    )
    _address(add)

    for name, method, verb, description, send in STEERING:
        parser = leaf(group, name, description + NEEDS, _steer(method, verb, send), common)
        parser.add_argument("name", help="the job")
        _address(parser)

    runs = leaf(group, "history", "A job's runs, newest first." + NEEDS, history, common)
    runs.add_argument("name", help="the job")
    runs.add_argument("--limit", type=int, default=20, help="runs shown, 1..500 (default 20)")
    _address(runs)
