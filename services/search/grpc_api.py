"""gRPC servicers of ``webook.search.v1``: ``SearchService``, ``SyncService`` and
``SnapshotService``.

Proto ↔ domain translation only; every method makes exactly one
:class:`~services.search.service.SearchService` call, which validates its input (the query,
the page, the ids) and raises :class:`kit.errors.AppError` subclasses that the server's
error interceptor turns into status codes with a ``google.rpc.ErrorInfo`` reason
(``SEARCH_INVALID_QUERY`` / ``SEARCH_INVALID_PAGE`` / ``SEARCH_INVALID_DOCUMENT`` →
INVALID_ARGUMENT, ``SEARCH_INDEX_UNAVAILABLE`` → UNAVAILABLE).

``SyncService`` is the direct input path (tools, other producers, repairs): an input is
answered OK only once it is committed to the index, so a restart keeps it. Each input is a
version: an article's ``utime_ms`` (now when 0), a user's and a deletion's time of arrival.

``SnapshotService`` lets a new replica copy this replica's committed index
(:mod:`services.search.snapshot`); it is called replica to replica, on one chosen instance.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.search.domain import PUBLISHED_STATUS, SearchHit, SearchPage, check_time_ms
from services.search.service import SearchService
from services.search.snapshot import PreparedSnapshot, SnapshotService
from webook.search.v1 import search_pb2, search_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def hit_to_proto(hit: SearchHit) -> search_pb2.Hit:
    """One result on the wire."""
    return search_pb2.Hit(
        type=search_pb2.DocType.ValueType(int(hit.key.type)),
        id=hit.key.id,
        title=hit.title,
        snippet=hit.snippet_html,
        score=hit.score,
        title_highlight=hit.title_html,
        author_id=hit.author_id,
        author_name=hit.author_name,
        utime_ms=hit.utime_ms,
    )


def page_to_proto(page: SearchPage) -> search_pb2.SearchResponse:
    """A page of results on the wire."""
    return search_pb2.SearchResponse(hits=[hit_to_proto(h) for h in page.hits], total=page.total)


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """Serves ``Search`` on top of :class:`SearchService`."""

    def __init__(self, service: SearchService) -> None:
        self._service = service

    async def Search(
        self, request: search_pb2.SearchRequest, context: Context
    ) -> search_pb2.SearchResponse:
        """A page of articles and/or users matching the query, best first."""
        page = await self._service.search(
            request.query, int(request.type), request.offset, request.limit
        )
        return page_to_proto(page)


class SyncServicer(search_pb2_grpc.SyncServiceServicer):
    """Serves the direct sync input on top of :class:`SearchService`."""

    def __init__(self, service: SearchService) -> None:
        self._service = service

    async def InputArticle(
        self, request: search_pb2.InputArticleRequest, context: Context
    ) -> search_pb2.InputArticleResponse:
        """Index a published article; any other status removes it from results."""
        article = request.article
        # Checked here as well as by the document: a withdrawal's version is the same time.
        check_time_ms(article.utime_ms, "utime_ms")
        await self._service.input_article(
            article_id=article.id,
            title=article.title,
            content_html=article.content,
            author_id=article.author_id,
            author_name=article.author_name,
            published=article.status == PUBLISHED_STATUS,
            utime_ms=article.utime_ms,
        )
        return search_pb2.InputArticleResponse()

    async def InputUser(
        self, request: search_pb2.InputUserRequest, context: Context
    ) -> search_pb2.InputUserResponse:
        """Index a user's nickname and about-me."""
        user = request.user
        await self._service.input_user(
            user_id=user.id, nickname=user.nickname, about_me=user.about_me
        )
        return search_pb2.InputUserResponse()

    async def DeleteArticle(
        self, request: search_pb2.DeleteArticleRequest, context: Context
    ) -> search_pb2.DeleteArticleResponse:
        """Remove an article from results (a withdrawn article)."""
        await self._service.remove_article(request.id)
        return search_pb2.DeleteArticleResponse()


def prepared_to_proto(prepared: PreparedSnapshot) -> search_pb2.PrepareSnapshotResponse:
    """A prepared snapshot on the wire."""
    manifest = prepared.manifest
    return search_pb2.PrepareSnapshotResponse(
        snapshot_id=manifest.snapshot_id,
        files=[search_pb2.SnapshotFile(name=f.name, size=f.size) for f in manifest.files],
        offsets=[
            search_pb2.PartitionOffset(topic=o.topic, partition=o.partition, offset=o.offset)
            for o in manifest.offsets
        ],
        expires_at_ms=prepared.expires_at_ms,
    )


class SnapshotServicer(search_pb2_grpc.SnapshotServiceServicer):
    """Serves snapshots of this replica's index on top of :class:`SnapshotService`."""

    def __init__(self, snapshots: SnapshotService) -> None:
        self._snapshots = snapshots

    async def PrepareSnapshot(
        self, request: search_pb2.PrepareSnapshotRequest, context: Context
    ) -> search_pb2.PrepareSnapshotResponse:
        """A consistent copy of the committed index and the offsets it had consumed."""
        return prepared_to_proto(await self._snapshots.prepare())

    async def ReadSnapshot(
        self, request: search_pb2.ReadSnapshotRequest, context: Context
    ) -> search_pb2.ReadSnapshotResponse:
        """A chunk of one file of a snapshot."""
        chunk = await self._snapshots.read(
            request.snapshot_id, request.name, request.offset, request.max_bytes
        )
        return search_pb2.ReadSnapshotResponse(data=chunk.data, eof=chunk.eof)
