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

Settings come from the environment (prefix ``WEBOOK_SEARCH_``) and optionally ``--env-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kit.config import load_settings
from kit.errors import AppError
from kit.events import BatchConsumer, ConsumerConfig
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import ServerInterceptorBase
from kit.grpcx.server import Registration, ServiceRunner
from kit.logging import configure_logging
from kit.observability.tracing import configure_tracing
from services.search.events import sync_consumer, sync_group
from services.search.grpc_api import SearchServicer, SyncServicer
from services.search.index import TantivySearchIndex
from services.search.peers import ArticleServicePublished, UserServiceDirectory
from services.search.service import BatchedIndexWriter, Reindexer, SearchService
from services.search.settings import SearchSettings, resolve_data_dir
from services.search.storage import DataDir
from webook.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = "search"

logger = logging.getLogger(__name__)


def consumer_config(settings: SearchSettings, index_id: str) -> ConsumerConfig:
    """The sync consumer's configuration for the index ``index_id``."""
    return ConsumerConfig(
        bootstrap=settings.kafka_bootstrap,
        group_id=sync_group(settings.sync_group_prefix, index_id),
        max_batch=settings.sync_batch_size,
        max_wait_s=settings.sync_batch_wait_seconds,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        lag_interval_s=settings.kafka_lag_interval_seconds,
        manage_topics=settings.kafka_manage_topics,
        topic_partitions=settings.kafka_topic_partitions,
        client_id=f"webook-{SERVICE_NAME}",
    )


def open_index(settings: SearchSettings) -> tuple[TantivySearchIndex, str]:
    """The index of the configured data directory and its id (see :mod:`.storage`)."""
    return DataDir(resolve_data_dir(settings)).open_index(
        writer_heap_bytes=settings.writer_heap_bytes,
        writer_threads=settings.writer_threads,
        recency_boost=settings.recency_boost,
    )


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


class SearchRunner(ServiceRunner):
    """The search process: the index writer starts before the server accepts calls, the
    sync consumer (and a rebuild of an empty index) once it listens."""

    def __init__(
        self,
        settings: SearchSettings,
        *,
        index: TantivySearchIndex,
        writer: BatchedIndexWriter,
        consumer: BatchConsumer | None,
        reindexer: Reindexer | None,
        registration: Registration | None = None,
        interceptors: Sequence[ServerInterceptorBase] = (),
    ) -> None:
        super().__init__(
            SERVICE_NAME, settings, registration=registration, interceptors=interceptors
        )
        self.index = index
        self.writer = writer
        self.consumer = consumer
        self._reindexer = reindexer
        self.reindex_task: asyncio.Task[None] | None = None
        if consumer is not None:
            # Stopped before the drain: its last batch still reaches the running writer.
            self.on_shutdown(consumer.stop)
        self.on_shutdown(self._cancel_reindex)

    async def start(self) -> int:
        """Start the writer; listen, serve and register; then consume (and maybe rebuild)."""
        self.writer.start()
        port = await super().start()
        if self.consumer is not None:
            self.consumer.start()
        if self._reindexer is not None and sum(self.index.num_docs().values()) == 0:
            self.reindex_task = asyncio.create_task(
                self._rebuild(self._reindexer), name="search-reindex"
            )
        return port

    @staticmethod
    async def _rebuild(reindexer: Reindexer) -> None:
        logger.info("the search index is empty: rebuilding it from the source services")
        try:
            counts = await reindexer.run()
        except AppError as exc:
            logger.warning(
                "rebuilding the empty index failed; run `python -m services.search reindex` "
                "or restart the service once the sources answer",
                extra={"reason": exc.reason, "error": exc.message},
            )
            return
        logger.info("empty index rebuilt", extra=counts)

    async def _cancel_reindex(self) -> None:
        task, self.reindex_task = self.reindex_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def build_runner(
    settings: SearchSettings,
    *,
    registration: Registration | None = None,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> SearchRunner:
    """The whole search service process, not yet started; its shutdown stops the consumer,
    commits what is pending and closes the index.

    Call it inside a running event loop (``grpc.aio`` binds its server to the current one).
    Raises :class:`~services.search.errors.SearchUnavailable` if the index cannot be opened
    (another process writes it).
    """
    index, index_id = open_index(settings)
    writer = BatchedIndexWriter(
        index,
        commit_interval_s=settings.commit_interval_seconds,
        max_batch=settings.commit_max_batch,
    )
    service = SearchService(index, writer)
    clients = ServiceClients.from_settings(settings)
    consumer = (
        sync_consumer(service, consumer_config(settings, index_id))
        if settings.sync_consumer_enabled
        else None
    )
    reindexer = (
        build_reindexer(settings, service, index, clients) if settings.reindex_when_empty else None
    )
    runner = SearchRunner(
        settings,
        index=index,
        writer=writer,
        consumer=consumer,
        reindexer=reindexer,
        registration=registration,
        interceptors=interceptors,
    )
    runner.add_service(
        search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
        search_pb2_grpc.add_SearchServiceServicer_to_server,
        SearchServicer(service),
    )
    runner.add_service(
        search_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name,
        search_pb2_grpc.add_SyncServiceServicer_to_server,
        SyncServicer(service),
    )
    # After the drain, in reverse order: the writer commits what the drained calls and the
    # consumer's last batch left pending, then the index and the clients close.
    runner.on_close(clients.close)
    runner.on_close(index.close)
    runner.on_close(writer.stop)
    logger.info(
        "search index ready",
        extra={
            "path": str(index.path),
            "index_id": index_id,
            "group": consumer.group_id if consumer is not None else None,
        },
    )
    return runner


async def serve(settings: SearchSettings) -> None:
    """Run the service until SIGTERM or SIGINT."""
    runner = build_runner(settings)
    await runner.serve()


def migrate(settings: SearchSettings) -> None:
    """Nothing to migrate (no SQL; the index is created on first use): ensure the data dir."""
    data_dir = resolve_data_dir(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    logger.info(
        "search keeps no SQL schema: nothing to migrate; the index is created on first start",
        extra={"data_dir": str(data_dir)},
    )


async def reindex(settings: SearchSettings) -> dict[str, int]:
    """Rebuild the (stopped service's) index from the source services; returns counts."""
    index, index_id = open_index(settings)
    writer = BatchedIndexWriter(
        index,
        commit_interval_s=settings.commit_interval_seconds,
        max_batch=settings.commit_max_batch,
    )
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


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m services.search",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate", "reindex"], default="serve"
    )
    parser.add_argument("--env-file", type=Path, help="dotenv file with WEBOOK_SEARCH_* settings")
    args = parser.parse_args(argv)
    settings = load_settings(SearchSettings, env_file=args.env_file)
    configure_logging(SERVICE_NAME, settings.log_level)
    if args.command == "migrate":
        migrate(settings)
        return
    provider = configure_tracing(SERVICE_NAME, settings.otlp_endpoint)
    try:
        if args.command == "reindex":
            counts = asyncio.run(reindex(settings))
            print(json.dumps(counts, sort_keys=True))
        else:
            asyncio.run(serve(settings))
    except AppError as exc:
        # An expected failure (index locked, a source unreachable): a clear line, no trace.
        logger.error("search command failed", extra={"command": args.command, "reason": exc.reason})
        print(f"search {args.command} failed: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
