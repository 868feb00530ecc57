"""Composition root of the search service: ``python -m services.search [serve|migrate|reindex]``.

- ``serve`` (the default) configures logging and tracing, builds the process with
  :func:`build_runner` and runs it until SIGTERM/SIGINT: the ``SearchService`` and
  ``SyncService`` RPCs, the group-committing index writer, and the Kafka sync consumer
  (started once the server listens, stopped before in-flight calls drain; the writer
  commits what is pending after they drained). When the index holds no document at start
  (first deployment, a new replica's empty volume) and ``REINDEX_WHEN_EMPTY`` is on, a
  rebuild from the article and user services runs in the background while the service
  already answers.
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
from typing import Unpack

from kit.errors import AppError
from kit.grpcx.cli import Command, run_service
from kit.grpcx.client import ServiceClients
from kit.grpcx.process import RunnerOptions, consumer_config
from kit.grpcx.server import ServiceRunner
from services.search.events import sync_consumer, sync_group
from services.search.grpc_api import SearchServicer, SyncServicer
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, UserServiceDirectory
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.settings import SearchSettings, resolve_data_dir
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
    """A reindexer reading the article and user services through ``clients``."""
    timeout = settings.reindex_call_timeout_seconds
    return Reindexer(
        service,
        index,
        ArticleServicePublished(
            clients, page_size=settings.reindex_article_page, timeout_s=timeout
        ),
        UserServiceDirectory(clients, page_size=settings.reindex_user_page, timeout_s=timeout),
        chunk=settings.reindex_chunk,
    )


class EmptyIndexRebuild:
    """Rebuilds an index that holds no document, in the background, once the service serves
    (first deployment, a new replica's empty volume); cancelled at shutdown."""

    def __init__(self, index: TantivySearchIndex, reindexer: Reindexer) -> None:
        self._index = index
        self._reindexer = reindexer
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the rebuild when the index is empty."""
        if sum(self._index.num_docs().values()) == 0:
            self.task = asyncio.create_task(self._rebuild(), name="search-reindex")

    async def _rebuild(self) -> None:
        logger.info("the search index is empty: rebuilding it from the source services")
        try:
            counts = await self._reindexer.run()
        except AppError as exc:
            logger.warning(
                "rebuilding the empty index failed; run `python -m services.search reindex` "
                "or restart the service once the sources answer",
                extra={"reason": exc.reason, "error": exc.message},
            )
            return
        logger.info("empty index rebuilt", extra=counts)

    async def stop(self) -> None:
        """Cancel a rebuild still running."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def build_runner(settings: SearchSettings, **options: Unpack[RunnerOptions]) -> ServiceRunner:
    """The search process, not yet started; build it inside a running event loop.

    Its components: the index writer (started before serving, committing what is pending
    after the drain), the sync consumer and the rebuild of an empty index (started once it
    serves, stopped before the drain). Raises
    :class:`~services.search.errors.SearchUnavailable` if the index cannot be opened
    (another process writes it).
    """
    index, index_id, writer = open_index(settings)
    runner = ServiceRunner("search", settings, **options)
    clients = ServiceClients.from_settings(settings)
    # After the drain, in reverse order: the writer commits what the drained calls and the
    # consumer's last batch left pending, then the index and the clients close.
    runner.on_close(clients.close)
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
        group = runner.start_after_serving(sync_consumer(service, config)).group_id
    if settings.reindex_when_empty:
        reindexer = build_reindexer(settings, service, index, clients)
        runner.start_after_serving(EmptyIndexRebuild(index, reindexer))
    runner.mount(SearchServicer(service))
    runner.mount(SyncServicer(service))
    logger.info(
        "search index ready", extra={"path": str(index.path), "index_id": index_id, "group": group}
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


COMMANDS = [
    Command("migrate", "nothing to migrate: ensure the data directory", migrate, traced=False),
    Command("reindex", "rebuild the index offline from the source services", print_reindex),
]


if __name__ == "__main__":
    raise SystemExit(run_service("search", SearchSettings, build_runner, commands=COMMANDS))
