"""Composition root of the interactive service: ``python -m services.interactive [serve|migrate]``.

Counts and per-user likes and collections live in SQL, counts cached in Redis and, when
``LOCAL_CACHE_ENABLED``, in process too (kept coherent by Redis's invalidation feed, started
before the server accepts calls and ended after the drain, before Redis closes). The
read-event consumer runs in the same process: started once the server serves, stopped
before in-flight calls drain. The command line is :func:`kit.grpcx.cli.run_service`, the
shared wiring :mod:`kit.grpcx.process`. Likes and collects ask the article service whether the
article is published (:mod:`services.interactive.peers`).
"""

from __future__ import annotations

from typing import Unpack

from clients.article import PublishedArticleTargets
from kit.grpcx.cli import run_service
from kit.grpcx.process import RunnerOptions, consumer_config, wire_backends, wire_clients
from kit.grpcx.server import ServiceRunner
from services.interactive.events import read_event_consumer
from services.interactive.grpc_api import InteractiveServicer
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.service import InteractiveService
from services.interactive.settings import InteractiveSettings


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
    service = InteractiveService(
        lambda: SqlUnitOfWork(backends.sessions, cache), targets=targets, cached=cache
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


if __name__ == "__main__":
    raise SystemExit(run_service("interactive", InteractiveSettings, build_runner))
