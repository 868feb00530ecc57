"""Composition root of the user service: ``python -m services.user [serve|migrate]``.

Users live in SQL with profiles cached in Redis, failed logins counted there too; every
change is published as a ``UserChanged`` event (:mod:`services.user.events`) through a
non-blocking producer. The
command line is :func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends, wire_producer
from kit.grpcx.server import ServiceRunner
from services.user.events import KafkaUserEvents, topic_specs
from services.user.grpc_api import UserServicer
from services.user.repository import SqlUnitOfWork
from services.user.repository.cache import UserProfileCache
from services.user.repository.throttle import RedisLoginThrottle
from services.user.service import UserService
from services.user.settings import UserSettings


def build_runner(settings: UserSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The user process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("user", settings, **options)
    backends = wire_backends(runner, settings)
    producer = wire_producer(runner, settings, topic_specs(settings.kafka_topic_partitions))
    profiles = UserProfileCache(backends.redis, ttl_seconds=settings.profile_cache_ttl_seconds)
    service = UserService(
        lambda: SqlUnitOfWork(backends.sessions, profiles),
        bcrypt_cost=settings.bcrypt_cost,
        events=KafkaUserEvents(producer),
        throttle=RedisLoginThrottle(backends.redis, settings.login_throttle_rules()),
    )
    runner.mount(UserServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("user", UserSettings, build_runner))
