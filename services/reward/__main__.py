"""Composition root of the reward service: ``python -m services.reward [serve|migrate]``.

Rewards live in SQL; ``RewardPaid`` events are written to the ``reward_outbox`` table in the
transaction that makes a reward paid and published by the outbox relay, which runs once the
server serves (``kit.outbox``). The article and payment services are reached through the
process's balanced channels (:func:`kit.grpcx.process.wire_clients`); the consumer of
payment status changes runs in the same process, started once the server serves. The
command line is :func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import (
    RunnerOptions,
    consumer_config,
    wire_backends,
    wire_clients,
    wire_outbox_relay,
)
from kit.grpcx.server import ServiceRunner
from services.reward.events import outbox_topic_specs, payment_event_consumer
from services.reward.grpc_api import RewardServicer
from services.reward.peers import RemoteArticles, RemotePayments
from services.reward.repository import SqlUnitOfWork, reward_outbox
from services.reward.service import RewardService
from services.reward.settings import RewardSettings


def build_runner(settings: RewardSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The reward process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("reward", settings, **options)
    backends = wire_backends(runner, settings)
    clients = wire_clients(runner, settings)
    outbox = reward_outbox()
    wire_outbox_relay(
        runner,
        settings,
        backends.sessions,
        outbox,
        outbox_topic_specs(settings.kafka_topic_partitions),
    )
    now = runner.settings_in_force(settings)
    service = RewardService(
        lambda: SqlUnitOfWork(backends.sessions, outbox),
        articles=RemoteArticles(clients, timeout_s=settings.peer_timeout_seconds),
        payments=RemotePayments(clients, timeout_s=settings.peer_timeout_seconds),
        bounds=lambda: now().amount_bounds(),
        repair_after_ms=lambda: int(now().repair_after_seconds * 1000),
    )
    if settings.payment_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=settings.payment_consumer_group,
            max_batch=settings.payment_batch_size,
            max_wait_s=settings.payment_batch_wait_seconds,
        )
        runner.start_after_serving(payment_event_consumer(service, config))
    runner.mount(RewardServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("reward", RewardSettings, build_runner))
