"""Composition root of the feed service: ``python -m services.feed [serve|migrate]``.

Feeds live in SQL; the follow service is reached through the process's balanced channels
(:func:`kit.grpcx.process.wire_clients`). Once the server serves, the consumer of article
publications and withdrawals, the consumer of likes and follows (a group of its own) and the
fan-out resumer run in the same process. The
big-author threshold and the fan-out batch size are live settings, read per use through
:meth:`kit.grpcx.server.ServiceRunner.settings_in_force`. The command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, consumer_config, wire_backends, wire_clients
from kit.grpcx.server import ServiceRunner
from kit.sql import SessionFactory
from services.feed.events import article_event_consumer, interaction_event_consumer
from services.feed.grpc_api import FeedServicer
from services.feed.peers import RemoteFollowers
from services.feed.repository import SqlUnitOfWork
from services.feed.service import FeedService
from services.feed.settings import FeedSettings
from services.feed.worker import FanoutResumer


def _units(sessions: SessionFactory) -> SqlUnitOfWork:
    return SqlUnitOfWork(sessions)


def build_runner(settings: FeedSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The feed process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("feed", settings, **options)
    backends = wire_backends(runner, settings)
    clients = wire_clients(runner, settings)
    now = runner.settings_in_force(settings)
    service = FeedService(
        lambda: _units(backends.sessions),
        followers=RemoteFollowers(clients, timeout_s=settings.peer_timeout_seconds),
        big_author_followers=lambda: now().big_author_followers,
        fanout_batch_size=lambda: now().fanout_batch_size,
        max_followees=settings.max_followees,
    )
    if settings.article_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=settings.article_consumer_group,
            max_batch=settings.article_batch_size,
            max_wait_s=settings.article_batch_wait_seconds,
        )
        runner.start_after_serving(article_event_consumer(service, config))
    if settings.interaction_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=settings.interaction_consumer_group,
            max_batch=settings.interaction_batch_size,
            max_wait_s=settings.interaction_batch_wait_seconds,
        )
        runner.start_after_serving(interaction_event_consumer(service, config))
    runner.start_after_serving(
        FanoutResumer(service, interval_s=settings.fanout_resume_interval_seconds)
    )
    runner.mount(FeedServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("feed", FeedSettings, build_runner))
