"""Composition root of the scheduler: ``python -m services.scheduler [serve|migrate]``.

One process is one scheduler instance: it serves the admin API
(``webook.scheduler.v1.SchedulerService``, :mod:`services.scheduler.grpc_api`) and runs the
take / renew / release loop (:meth:`~services.scheduler.scheduler.Scheduler.run_forever`)
as a component started once the server serves and stopped before the drain, so a stopping
instance hands its runs back before its pools close. Its id is ``instance_id``, else
``<host>-<pid>``. The in-process executors are the built-in ``noop`` and ``log``
(:mod:`services.scheduler.builtins`) plus whatever the caller of :func:`build_runner`
registered. Only SQL is needed (no Redis); the shared process wiring is
:mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions
from kit.grpcx.server import ServiceRunner
from kit.sql import create_engine, ensure_sqlite_directory, session_factory
from services.scheduler.builtins import register_builtins
from services.scheduler.executors import ExecutorRegistry
from services.scheduler.grpc_api import SchedulerServicer
from services.scheduler.repository import SqlUnitOfWork
from services.scheduler.scheduler import Scheduler, SchedulerLoop
from services.scheduler.service import JobService
from services.scheduler.settings import SchedulerSettings


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
    engine = create_engine(settings.database_url)
    runner.on_close(engine.dispose)
    sessions = session_factory(engine)

    def units() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions)

    registry = register_builtins(executors if executors is not None else ExecutorRegistry())
    scheduler = Scheduler(
        units, registry, instance=settings.instance(), options=settings.scheduler_options()
    )
    runner.start_after_serving(SchedulerLoop(scheduler))
    runner.mount(SchedulerServicer(JobService(units, registry)))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("scheduler", SchedulerSettings, build_runner))
