"""Composition root of the tag service: ``python -m services.tag [serve|migrate]``.

Tags live in SQL (no Redis: the service's cache is in process); ``TagsChanged`` events are
written to the ``tag_outbox`` table in the transaction of each change and published by the
outbox relay once the server serves (``kit.outbox``). Before the server accepts calls the
in-memory cache is preloaded with the recently active users; the consumer that keeps it
current with every replica's changes (a consumer group of this process's own, starting at
the topic's end) runs once the server serves. The article service is reached through the
process's balanced channels (:func:`kit.grpcx.process.wire_clients`). The command line is
:func:`kit.grpcx.cli.run_service`, the shared wiring :mod:`kit.grpcx.process`.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Unpack

from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, consumer_config, wire_clients, wire_outbox_relay
from kit.grpcx.server import Background, ServiceRunner
from kit.sql import create_engine, ensure_sqlite_directory, session_factory
from services.tag.cache import TagCache
from services.tag.events import cache_event_consumer, outbox_topic_specs
from services.tag.grpc_api import TagServicer
from services.tag.peers import RemoteArticleOwners
from services.tag.repository import SqlUnitOfWork, tag_outbox
from services.tag.service import TagService
from services.tag.settings import TagSettings


def build_runner(settings: TagSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The tag process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("tag", settings, **options)
    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url, pool=settings.database_pool)
    runner.on_close(engine.dispose)
    sessions = session_factory(engine)
    clients = wire_clients(runner, settings)
    outbox = tag_outbox()
    wire_outbox_relay(
        runner, settings, sessions, outbox, outbox_topic_specs(settings.kafka_topic_partitions)
    )
    cache = TagCache(
        max_users=settings.cache_max_users,
        max_resources=settings.cache_max_resources,
        max_age_s=settings.cache_max_age_seconds,
    )
    now = runner.settings_in_force(settings)
    service = TagService(
        lambda: SqlUnitOfWork(sessions, outbox),
        owners=RemoteArticleOwners(clients, timeout_s=settings.peer_timeout_seconds),
        cache=cache,
        limits=lambda: now().tag_limits(),
    )
    if settings.preload_enabled:

        async def preload() -> None:
            await service.preload(settings.preload_limits())

        runner.start_before_serving(Background(preload, lambda: None))
    if settings.cache_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=f"{settings.cache_consumer_group_prefix}-{uuid.uuid4().hex[:16]}",
            max_batch=settings.cache_batch_size,
            max_wait_s=settings.cache_batch_wait_seconds,
        )
        # A new group per process: every replica sees every change, from now on (what
        # happened before start is what the preload read from SQL).
        config = dataclasses.replace(config, auto_offset_reset="latest")
        runner.start_after_serving(cache_event_consumer(cache, config))
    runner.mount(TagServicer(service))
    return runner


if __name__ == "__main__":
    raise SystemExit(run_service("tag", TagSettings, build_runner))
