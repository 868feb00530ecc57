"""Composition root of the account service: ``python -m services.account [serve|migrate]``.

Accounts and their ledger live in SQL (no Redis). The consumer of paid rewards runs in the
same process: started once the server serves, stopped before in-flight calls drain. The
reconciliation asks the payment service through the process's balanced channels
(:func:`kit.grpcx.process.wire_clients`); the shared process wiring is
:mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, consumer_config, wire_clients
from kit.grpcx.server import ServiceRunner
from kit.sql import create_engine, ensure_sqlite_directory, session_factory
from services.account.events import reward_paid_consumer
from services.account.grpc_api import AccountServicer
from services.account.peers import RemotePayments
from services.account.repository import SqlUnitOfWork
from services.account.service import AccountService
from services.account.settings import AccountSettings


def build_runner(settings: AccountSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The account process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("account", settings, **options)
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url, pool=settings.database_pool)
    runner.on_close(engine.dispose)
    sessions = session_factory(engine)
    clients = wire_clients(runner, settings)
    now = runner.settings_in_force(settings)
    service = AccountService(
        lambda: SqlUnitOfWork(sessions),
        RemotePayments(clients, timeout_s=lambda: now().payment_timeout_seconds),
        platform_percent=lambda: now().platform_share_percent,
    )
    if settings.reward_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=settings.reward_consumer_group,
            max_batch=settings.reward_batch_size,
            max_wait_s=settings.reward_batch_wait_seconds,
        )
        runner.start_after_serving(reward_paid_consumer(service, config))
    runner.mount(AccountServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("account", AccountSettings, build_runner))
