"""Composition root of the interactive service: ``python -m services.interactive [serve|migrate]``.

Counts and per-user likes and collections live in SQL, counts cached in Redis and, when
``LOCAL_CACHE_ENABLED``, in process too (kept coherent by Redis's invalidation feed, started
before the server accepts calls and ended after the drain, before Redis closes). The
read-event consumer runs in the same process: started once the server serves, stopped
before in-flight calls drain. The command line is :func:`kit.grpcx.cli.run_service`, the
shared wiring :mod:`kit.grpcx.process`. Likes and collects ask the article service whether the
article is published (likes through :mod:`services.interactive.peers`, which also names the
author); a new like of an article is announced as ``ArticleLiked`` by the buffered producer,
started before serving and flushed after the drain (:mod:`services.interactive.events`).

With ``migration_destination_url`` set, the tables are being moved to that database
(:func:`wire_migration`, docs/interactive.md "Migrating the tables"): units of work double
write in the live ``migration_mode``, the fixer consumes the difference topic in this
process, and the admin API (``MigratorService``, operator only) reads and switches the mode
and runs validations. ``migrate`` then upgrades both databases.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Unpack

from clients.article import PublishedArticleTargets
from kit.events import EventProducer, TopicSpec
from kit.grpcx.cli import Command, migrate, run_service
from kit.grpcx.process import (
    Backends,
    RunnerOptions,
    consumer_config,
    producer_config,
    wire_backends,
    wire_clients,
    wire_producer,
)
from kit.grpcx.server import ServiceRunner
from kit.migrator import (
    CheckpointStore,
    DifferenceSink,
    Direction,
    DoubleWriter,
    Fixer,
    HostedFixer,
    HostedMigration,
    KafkaDifferenceSink,
    MigratedTable,
    MigratorAdmin,
    ModeHolder,
    Sides,
    Validator,
    ValidatorConfig,
    difference_topic,
)
from kit.sql import create_engine, ensure_sqlite_directory, session_factory
from services.interactive.events import KafkaLikeEvents, read_event_consumer, topic_specs
from services.interactive.grpc_api import InteractiveServicer
from services.interactive.peers import PublishedArticleAuthors
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.repository.migration import TABLES, MigratingUnitOfWork
from services.interactive.service import InteractiveService, UnitOfWork
from services.interactive.settings import InteractiveSettings

logger = logging.getLogger(__name__)

MIGRATION = "interactive"
"""The migration's name (the admin API's ``migration``, the ``webook_migrator_mode`` label)."""


def build_runner(settings: InteractiveSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The interactive process, not yet started; build it inside a running event loop."""
    runner = ServiceRunner("interactive", settings, **options)
    backends = wire_backends(runner, settings)
    clients = wire_clients(runner, settings)
    targets = PublishedArticleTargets.from_settings(clients, settings)
    local = None
    if settings.local_cache_enabled:
        local = LocalCounts(
            backends.redis,
            counts_entries=settings.local_counts_entries,
            flags_entries=settings.local_flags_entries,
            max_age=settings.local_cache_max_age_seconds,
            stale_for=settings.local_cache_stale_seconds,
        )
        # Until its subscription is confirmed, lookups go to Redis.
        runner.start_before_serving(local)
    now = runner.settings_in_force(settings)
    cache = CountsCache(
        backends.redis, ttl_seconds=lambda: now().counts_cache_ttl_seconds, local=local
    )
    writer = (
        wire_migration(runner, settings, backends) if settings.migration_destination_url else None
    )

    def units() -> UnitOfWork:
        if writer is None:
            return SqlUnitOfWork(backends.sessions, cache)
        return MigratingUnitOfWork(writer, cache)

    producer = wire_producer(runner, settings, topic_specs(settings.kafka_topic_partitions))
    service = InteractiveService(
        units,
        targets=targets,
        cached=cache,
        authors=PublishedArticleAuthors.from_settings(clients, settings),
        like_events=KafkaLikeEvents(producer),
    )
    if settings.read_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=settings.read_consumer_group,
            max_batch=settings.read_batch_size,
            max_wait_s=settings.read_batch_wait_seconds,
        )
        runner.start_after_serving(read_event_consumer(service, config))
    runner.mount(InteractiveServicer(service))
    return runner


def wire_migration(
    runner: ServiceRunner, settings: InteractiveSettings, backends: Backends
) -> DoubleWriter:
    """The migration of the tables from ``database_url`` to ``migration_destination_url``:
    its double writer; the fixer, the validators' producer and the admin API on ``runner``."""
    now = runner.settings_in_force(settings)
    ensure_sqlite_directory(settings.migration_destination_url)
    destination = create_engine(settings.migration_destination_url, pool=settings.database_pool)
    runner.on_close(destination.dispose)
    sides = Sides(backends.sessions, session_factory(destination))
    mode = ModeHolder(MIGRATION, settings.migration_mode)
    mode.follow(lambda: now().migration_mode)
    if runner.live is not None:
        # A change of the setting wins over a mode the admin API set in this process.
        # Following again also wakes the units of work waiting at the "switching" barrier.
        def changed(old: InteractiveSettings, new: InteractiveSettings) -> None:
            if new.migration_mode != old.migration_mode:
                mode.follow(lambda: now().migration_mode)

        runner.live.subscribe(changed)  # type: ignore[arg-type]
    checkpoints = CheckpointStore(sides.destination)

    def validator(table: MigratedTable, direction: Direction, sink: DifferenceSink) -> Validator:
        config = ValidatorConfig(
            batch_size=settings.migration_validator_batch_size,
            rows_per_second=lambda: now().migration_validator_rows_per_second,
            latency_threshold_s=now().migration_validator_latency_threshold_seconds,
        )
        return Validator(table, sides, direction, sink, checkpoints, config)

    topics = [TopicSpec(difference_topic(), settings.kafka_topic_partitions)]
    # A producer of the validators' own: the sink waits for everything it holds.
    producer = runner.start_before_serving(
        EventProducer(producer_config(f"{runner.name}-migrator", settings, topics))
    )
    fixer = HostedFixer(
        Fixer(TABLES, sides),
        consumer_config(
            runner.name,
            settings,
            group_id=settings.migration_fixer_group,
            max_batch=settings.migration_validator_batch_size,
            max_wait_s=settings.read_batch_wait_seconds,
        ),
    )
    runner.start_after_serving(fixer)
    hosted = HostedMigration(
        mode,
        TABLES,
        validator,
        KafkaDifferenceSink(producer, flush_timeout_s=max(settings.event_flush_timeout_seconds, 1)),
        checkpoints,
        fixer=fixer,
        incremental_interval_s=settings.migration_incremental_interval_seconds,
    )
    runner.on_shutdown(hosted.close)
    runner.mount(MigratorAdmin([hosted]))
    logger.info(
        "interactive tables migrating",
        extra={"migration": MIGRATION, "mode": mode.current().value},
    )
    return DoubleWriter(
        sides, mode, TABLES, switch_wait_s=lambda: now().migration_switch_wait_seconds
    )


def migrate_databases(settings: InteractiveSettings, args: argparse.Namespace) -> None:
    """``migrate``: the schema on ``database_url`` and, when a migration is configured, the
    same schema and the validators' checkpoint table on the destination."""
    migrate("interactive", settings.database_url)
    if settings.migration_destination_url:
        migrate("interactive", settings.migration_destination_url)
        asyncio.run(_ensure_checkpoints(settings.migration_destination_url))
        logger.info("migration destination ready", extra={"migration": MIGRATION})


async def _ensure_checkpoints(url: str) -> None:
    engine = create_engine(url)
    try:
        await CheckpointStore(session_factory(engine)).ensure_table()
    finally:
        await engine.dispose()


COMMANDS = [
    Command(
        "migrate",
        "apply the schema migrations (to the migration's destination too) and exit",
        migrate_databases,
        traced=False,
    )
]

if __name__ == "__main__":
    raise SystemExit(
        run_service("interactive", InteractiveSettings, build_runner, commands=COMMANDS)
    )
