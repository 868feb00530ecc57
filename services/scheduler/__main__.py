"""Composition root of the scheduler: ``python -m services.scheduler [serve|migrate]``.

One process is one scheduler instance: it serves the admin API
(``webook.scheduler.v1.SchedulerService``, :mod:`services.scheduler.grpc_api`) and runs the
take / renew / release loop (:meth:`~services.scheduler.scheduler.Scheduler.run_forever`)
as a component started once the server serves and stopped before the drain, so a stopping
instance hands its runs back before its pools close. Its id is ``instance_id``, else
``<host>-<pid>``. The in-process executors are the built-in ``noop`` and ``log``
(:mod:`services.scheduler.builtins`) plus whatever the caller of :func:`build_runner`
registered; the remote ones (:mod:`services.scheduler.remote`) share one HTTP client and
the process's service clients (discovery or static ``peers``, mutual TLS), both closed after
the drain. The jobs of the ``jobs`` setting that do not exist yet are added before serving
(:mod:`services.scheduler.declared`). Only SQL is needed (no Redis); the shared process
wiring is :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Final, Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_clients
from kit.grpcx.server import ServiceRunner
from kit.sql import create_engine, ensure_sqlite_directory, session_factory
from services.scheduler.builtins import register_builtins
from services.scheduler.declared import DeclaredJobs
from services.scheduler.domain import GRPC_MAX_TIMEOUT_S
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.grpc_api import SchedulerServicer
from services.scheduler.remote import http_client, remote_executors
from services.scheduler.repository import SqlUnitOfWork
from services.scheduler.scheduler import Scheduler, SchedulerLoop
from services.scheduler.service import JobService
from services.scheduler.settings import SchedulerSettings

LOCK_WAIT_TIMEOUT_S: Final = 1


def build_runner(
    settings: SchedulerSettings,
    *,
    executors: ExecutorRegistry | None = None,
    **options: Unpack[RunnerOptions],
) -> ServiceRunner:
    """The scheduler process, not yet started.

    ``executors``: in-process executors to offer besides the built-ins (which are added to
    it); the admin API refuses a ``local`` job naming a function not registered here.
    """
    runner = ServiceRunner("scheduler", settings, **options)
    ensure_sqlite_directory(settings.database_url)
    # A take waits at most this long for a row another instance's transaction holds (one
    # frozen mid-renewal), then tries the next job: InnoDB's 50 s would stall the loop.
    engine = create_engine(
        settings.database_url, lock_wait_timeout_s=LOCK_WAIT_TIMEOUT_S, pool=settings.database_pool
    )
    runner.on_close(engine.dispose)
    sessions = session_factory(engine)

    def units() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions)

    registry = register_builtins(executors if executors is not None else ExecutorRegistry())
    # Every call the scheduler makes is a grpc job's, bounded by the job's own timeout_s (up
    # to an hour): the client default, meant for calls made while serving a request, would
    # cut a long job short.
    unbounded = {"client_default_timeout": GRPC_MAX_TIMEOUT_S}
    clients = wire_clients(runner, settings.model_copy(update=unbounded))
    http = http_client()
    runner.on_close(http.aclose)
    scheduler = Scheduler(
        units,
        registry,
        instance=settings.instance(),
        remote=remote_executors(http=http, clients=clients),
        options=settings.scheduler_options(),
    )
    jobs = JobService(units, registry)
    # The declared jobs exist before the admin API answers and the loop first ticks.
    runner.start_before_serving(DeclaredJobs(jobs, settings.jobs))
    runner.start_after_serving(SchedulerLoop(scheduler))
    runner.mount(SchedulerServicer(jobs))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("scheduler", SchedulerSettings, build_runner))
