"""gRPC servicers of ``webook.search.v1``: ``SearchService`` and ``SyncService``.

Proto ↔ domain translation only; every method makes exactly one
:class:`~services.search.service.SearchService` call, which validates its input (the query,
the page, the ids) and raises :class:`kit.errors.AppError` subclasses that the server's
error interceptor turns into status codes with a ``google.rpc.ErrorInfo`` reason
(``SEARCH_INVALID_QUERY`` / ``SEARCH_INVALID_PAGE`` / ``SEARCH_INVALID_DOCUMENT`` →
INVALID_ARGUMENT, ``SEARCH_INDEX_UNAVAILABLE`` → UNAVAILABLE).

``SyncService`` is the direct input path (tools, other producers, repairs): an input is
answered OK only once it is committed to the index, so a restart keeps it. Each input is a
version: an article's ``utime_ms`` (now when 0), a user's and a deletion's time of arrival.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.search.domain import PUBLISHED_STATUS, SearchHit, SearchPage, check_time_ms
from services.search.service import SearchService
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
