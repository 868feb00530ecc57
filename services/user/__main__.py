"""Composition root of the user service: ``python -m services.user [serve|migrate]``.

Users live in SQL with profiles cached in Redis, failed logins counted there too; every
change is recorded as a ``UserChanged`` event (:mod:`services.user.events`) in the
``user_outbox`` table with the change itself, and published by the outbox relay, which runs
once the server serves (:mod:`kit.outbox`). The command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends, wire_outbox_relay
from kit.grpcx.server import ServiceRunner
from services.user.events import topic_specs
from services.user.grpc_api import UserServicer
from services.user.repository import SqlUnitOfWork, user_outbox
from services.user.repository.cache import UserProfileCache
from services.user.repository.throttle import RedisLoginThrottle
from services.user.service import UserService
from services.user.settings import UserSettings


def build_runner(settings: UserSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The user process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("user", settings, **options)
    backends = wire_backends(runner, settings)
    outbox = user_outbox()
    wire_outbox_relay(
        runner, settings, backends.sessions, outbox, topic_specs(settings.kafka_topic_partitions)
    )
    now = runner.settings_in_force(settings)
    profiles = UserProfileCache(backends.redis, ttl_seconds=lambda: now().profile_cache_ttl_seconds)
    service = UserService(
        lambda: SqlUnitOfWork(backends.sessions, profiles, outbox),
        bcrypt_cost=settings.bcrypt_cost,
        throttle=RedisLoginThrottle(backends.redis, settings.login_throttle_rules()),
    )
    runner.mount(UserServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("user", UserSettings, build_runner))
