"""Composition root of the follow service: ``python -m services.follow [serve|migrate]``.

Follow relations live in SQL and each user's follower/followee counts are cached in Redis;
``UserFollowed`` events are written to the ``follow_outbox`` table in the transaction of the
follow and published by the outbox relay, which runs once the server serves
(``kit.outbox``). The shared process wiring is :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, wire_backends, wire_outbox_relay
from kit.grpcx.server import ServiceRunner
from services.follow.events import outbox_topic_specs
from services.follow.grpc_api import FollowServicer
from services.follow.repository import SqlUnitOfWork, follow_outbox
from services.follow.repository.cache import FollowStatsCache
from services.follow.service import FollowService
from services.follow.settings import FollowSettings


def build_runner(settings: FollowSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The follow process, not yet started: relations over SQL with the counts cached for
    the live ``stats_cache_ttl_seconds`` (read at each write)."""
    runner = ServiceRunner("follow", settings, **options)
    backends = wire_backends(runner, settings)
    outbox = follow_outbox()
    wire_outbox_relay(
        runner,
        settings,
        backends.sessions,
        outbox,
        outbox_topic_specs(settings.kafka_topic_partitions),
    )
    now = runner.settings_in_force(settings)
    stats = FollowStatsCache(backends.redis, ttl_seconds=lambda: now().stats_cache_ttl_seconds)
    service = FollowService(lambda: SqlUnitOfWork(backends.sessions, stats, outbox))
    runner.mount(FollowServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("follow", FollowSettings, build_runner))
