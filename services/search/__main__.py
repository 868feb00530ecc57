"""Composition root of the search service: ``python -m services.search [serve|migrate|reindex]``.

- ``serve`` (the default) configures logging and tracing, builds the process with
  :func:`build_runner` and runs it until SIGTERM/SIGINT: the ``SearchService`` and
  ``SyncService`` RPCs, the group-committing index writer, and the Kafka sync consumer
  (started once the server listens, stopped before in-flight calls drain; the writer
  commits what is pending after they drained). On an empty data directory it first copies
  the index of a ready peer (:mod:`services.search.snapshot`: ``SnapshotService`` serves
  such copies to new replicas). A reconciliation sweep (:mod:`services.search.reconcile`)
  compares the index with the published articles every ``RECONCILE_INTERVAL_SECONDS`` and
  repairs what differs. When the index still holds no document at start
  (first deployment, a new replica's empty volume) and ``REINDEX_WHEN_EMPTY`` is on, a
  rebuild from the article and user services runs in the background, retried with a
  capped back-off until it succeeds (the sources may start later).

  **Readiness.** A replica listens at once but answers health NOT_SERVING and stays out of
  etcd (so neither the gateway's balancer nor Kubernetes sends it searches) until its
  answers are whole: the empty index rebuilt, and the sync consumer caught up with what
  was published before it started (:attr:`kit.events.BatchConsumer.caught_up`). Then it
  reports SERVING, registers, and stays so (:meth:`ServiceRunner.ready_when`).
  ``webook_search_ready`` and ``webook_search_not_ready_seconds`` show it.
- ``migrate`` has nothing to do: the service keeps no SQL schema, and the index is created
  by the first ``serve`` (or ``reindex``) with the schema of :mod:`services.search.index`.
  It only makes sure the data directory can be created, and exits 0, so that launchers that
  migrate every service (``make run``, the end-to-end tests, the benchmarks) need no
  exception for search.
- ``reindex`` rebuilds the index **offline**, from the article service's ``ListPub`` and the
  user service's ``ListUsers`` (found through etcd or ``PEERS`` like any client), then
  exits: every published article and every user is offered at its update time, and indexed
  articles the article service no longer lists are removed. Run it while the service is
  stopped: tantivy lets one process write an index, so a running service makes it fail at
  once with a clear message. Events published meanwhile wait in Kafka and are applied when
  the service starts again (stale ones are ignored by version). A running service rebuilds
  itself only in the case above (an empty index); to rebuild a live replica, stop it,
  reindex, start it — or start a new replica on an empty volume.

The command line is :func:`kit.grpcx.cli.run_service`: settings come from the environment
(prefix ``WEBOOK_SEARCH_``) and optionally ``--env-file``; an expected failure (the index
locked, a source unreachable) ends a command with one clear line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from typing import Unpack

from kit.errors import AppError
from kit.grpcx.cli import Command, run_service
from kit.grpcx.client import ServiceClients
from kit.grpcx.process import RunnerOptions, consumer_config, wire_clients
from kit.grpcx.server import ServiceRunner
from services.search import metrics
from services.search.events import sync_consumer, sync_group
from services.search.grpc_api import SearchServicer, SnapshotServicer, SyncServicer
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, TagServiceTagSets, UserServiceDirectory
from services.search.reconcile import build_reconciler
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.settings import SearchSettings, resolve_data_dir
from services.search.snapshot import SnapshotJanitor, SnapshotService, bootstrap_from_peer
from services.search.storage import DataDir

logger = logging.getLogger(__name__)


def open_index(settings: SearchSettings) -> tuple[TantivySearchIndex, str, BatchedIndexWriter]:
    """The index of the configured data directory, its id (see :mod:`.storage`) and a
    group-committing writer of it (not started)."""
    index, index_id = DataDir(resolve_data_dir(settings)).open_index(
        writer_heap_bytes=settings.writer_heap_bytes,
        writer_threads=settings.writer_threads,
        recency_boost=settings.recency_boost,
    )
    writer = BatchedIndexWriter(
        index,
        commit_interval_s=settings.commit_interval_seconds,
        max_batch=settings.commit_max_batch,
    )
    return index, index_id, writer


def build_reindexer(
    settings: SearchSettings,
    service: SearchService,
    index: TantivySearchIndex,
    clients: ServiceClients,
) -> Reindexer:
    """A reindexer reading the article, user and tag services through ``clients``."""
    timeout = settings.reindex_call_timeout_seconds
    return Reindexer(
        service,
        index,
        ArticleServicePublished(
            clients, page_size=settings.reindex_article_page, timeout_s=timeout
        ),
        UserServiceDirectory(clients, page_size=settings.reindex_user_page, timeout_s=timeout),
        tags=TagServiceTagSets(clients, timeout_s=timeout),
        chunk=settings.reindex_chunk,
    )


class EmptyIndexRebuild:
    """Rebuilds an index that holds no document, in the background, once the service serves
    (first deployment, a new replica's empty volume); cancelled at shutdown.

    A failed attempt (a source not up yet, a call timing out) is retried after a pause that
    doubles from ``retry_first_s`` to ``retry_max_s``, until one succeeds:
    :meth:`wait_rebuilt` returns then, or at once when the index was not empty.
    """

    def __init__(
        self,
        index: TantivySearchIndex,
        reindexer: Reindexer,
        *,
        retry_first_s: float = 0.5,
        retry_max_s: float = 15.0,
    ) -> None:
        self._index = index
        self._reindexer = reindexer
        self._retry_first_s = retry_first_s
        self._retry_max_s = max(retry_first_s, retry_max_s)
        self._rebuilt = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the rebuild when the index is empty."""
        if sum(self._index.num_docs().values()) == 0:
            self.task = asyncio.create_task(self._rebuild(), name="search-reindex")
        else:
            self._rebuilt.set()

    async def wait_rebuilt(self) -> None:
        """Return once the index was rebuilt, or at once if it did not need to be."""
        await self._rebuilt.wait()

    async def _rebuild(self) -> None:
        logger.info("the search index is empty: rebuilding it from the source services")
        pause = self._retry_first_s
        attempt = 1
        while True:
            try:
                counts = await self._reindexer.run()
            except AppError as exc:
                logger.warning(
                    "rebuilding the empty index failed; retrying",
                    extra={
                        "reason": exc.reason,
                        "error": exc.message,
                        "attempt": attempt,
                        "retry_in_s": pause,
                    },
                )
            except Exception:
                # Not an expected failure, yet the replica cannot be ready without its
                # index: retried all the same, with the traceback logged.
                logger.exception(
                    "rebuilding the empty index failed unexpectedly; retrying",
                    extra={"attempt": attempt, "retry_in_s": pause},
                )
            else:
                logger.info("empty index rebuilt", extra={**counts, "attempts": attempt})
                self._rebuilt.set()
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._retry_max_s)
            attempt += 1

    async def stop(self) -> None:
        """Cancel a rebuild still running."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def export_readiness(runner: ServiceRunner) -> None:
    """Have ``webook_search_ready`` and ``webook_search_not_ready_seconds`` read the
    runner's readiness (at every scrape), counting from now."""
    started = time.monotonic()
    metrics.READY.set_function(lambda: 1.0 if runner.ready else 0.0)
    metrics.NOT_READY_SECONDS.set_function(
        lambda: 0.0 if runner.ready else time.monotonic() - started
    )


def build_runner(settings: SearchSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The search process, not yet started; build it inside a running event loop.

    Its components: the index writer (started before serving, committing what is pending
    after the drain), the sync consumer and the rebuild of an empty index (started once it
    serves, stopped before the drain). It reports SERVING and registers only once the
    rebuild (when ``reindex_when_empty``) and the consumer's catching up (when
    ``sync_consumer_enabled``) are done. Raises
    :class:`~services.search.errors.SearchUnavailable` if the index cannot be opened
    (another process writes it).
    """
    data_dir = DataDir(resolve_data_dir(settings))
    index, index_id, writer = open_index(settings)
    runner = ServiceRunner("search", settings, **options)
    export_readiness(runner)
    # After the drain, in reverse order: the writer commits what the drained calls and the
    # consumer's last batch left pending, then the index and the clients close.
    clients = wire_clients(runner, settings)
    runner.on_close(index.close)
    runner.start_before_serving(writer)
    service = SearchService(index, writer)
    group = None
    if settings.sync_consumer_enabled:
        config = consumer_config(
            runner.name,
            settings,
            group_id=sync_group(settings.sync_group_prefix, index_id),
            max_batch=settings.sync_batch_size,
            max_wait_s=settings.sync_batch_wait_seconds,
        )
        consumer = runner.start_after_serving(sync_consumer(service, config))
        group = consumer.group_id
        # Every event published before the replica started is in the index.
        runner.ready_when("sync consumer caught up", consumer.wait_caught_up)
    # An empty index (a failed or disabled copy from a peer: see serve) is rebuilt from
    # the source services.
    if settings.reindex_when_empty:
        reindexer = build_reindexer(settings, service, index, clients)
        rebuild = runner.start_after_serving(
            EmptyIndexRebuild(
                index,
                reindexer,
                retry_first_s=settings.reindex_retry_first_seconds,
                retry_max_s=settings.reindex_retry_max_seconds,
            )
        )
        runner.ready_when("empty index rebuilt", rebuild.wait_rebuilt)
    # Compares the index with the article service's published list now and then and
    # repairs what differs (missed publications and withdrawals included).
    runner.start_after_serving(build_reconciler(settings, service, index, clients))
    # Only a ready replica (whole, caught up) hands its index to a new one.
    snapshots = SnapshotService.from_settings(
        settings, data_dir, group=group, ready=lambda: runner.ready
    )
    runner.start_after_serving(
        SnapshotJanitor(snapshots.store, settings.snapshot_cleanup_interval_seconds)
    )
    runner.mount(SearchServicer(service))
    runner.mount(SyncServicer(service))
    runner.mount(SnapshotServicer(snapshots))
    logger.info(
        "search index opened", extra={"path": str(index.path), "index_id": index_id, "group": group}
    )
    return runner


def migrate(settings: SearchSettings, args: argparse.Namespace) -> None:
    """Nothing to migrate (no SQL; the index is created on first use): ensure the data dir."""
    data_dir = resolve_data_dir(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    logger.info(
        "search keeps no SQL schema: nothing to migrate; the index is created on first start",
        extra={"data_dir": str(data_dir)},
    )


async def reindex(settings: SearchSettings) -> dict[str, int]:
    """Rebuild the (stopped service's) index from the source services; returns counts."""
    index, index_id, writer = open_index(settings)
    writer.start()
    clients = ServiceClients.from_settings(settings)
    try:
        service = SearchService(index, writer)
        logger.info("reindex started", extra={"path": str(index.path), "index_id": index_id})
        return await build_reindexer(settings, service, index, clients).run()
    finally:
        await writer.stop()
        await index.close()
        await clients.close()


async def print_reindex(settings: SearchSettings, args: argparse.Namespace) -> None:
    """The ``reindex`` command: rebuild offline, print the counts as one JSON line."""
    print(json.dumps(await reindex(settings), sort_keys=True))


async def serve(settings: SearchSettings, args: argparse.Namespace) -> None:
    """The ``serve`` command: on an empty data directory, first copy a ready peer's index
    (:func:`~services.search.snapshot.bootstrap_from_peer`; on any failure the directory
    stays empty and the index is rebuilt from the sources once serving), then serve."""
    result = await bootstrap_from_peer(settings, DataDir(resolve_data_dir(settings)))
    logger.info(
        "index bootstrap",
        extra={"outcome": result.outcome.value, "reason": result.reason, "peer": result.peer},
    )
    await build_runner(settings).serve()


COMMANDS = [
    Command("serve", "copy a peer's index if this one is empty, then serve (default)", serve),
    Command("migrate", "nothing to migrate: ensure the data directory", migrate, traced=False),
    Command("reindex", "rebuild the index offline from the source services", print_reindex),
]


if __name__ == "__main__":
    raise SystemExit(run_service("search", SearchSettings, build_runner, commands=COMMANDS))
