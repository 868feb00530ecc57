"""gRPC servicer of ``webook.article.v1.ArticleService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.article.service.ArticleService` call, which
validates the input and checks authorship. Errors are :class:`kit.errors.AppError`
subclasses that the server's error interceptor turns into status codes with a
``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.article.domain import Article, ArticleSummary, PublishedArticle
from services.article.service import ArticleService
from webook.article.v1 import article_pb2, article_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def article_to_proto(article: Article) -> article_pb2.Article:
    """The author's view on the wire."""
    return article_pb2.Article(
        id=article.id,
        title=article.title,
        content=article.content,
        abstract=article.abstract,
        author=article_pb2.Author(id=article.author_id),
        status=article_pb2.ArticleStatus.ValueType(int(article.status)),
        ctime_ms=article.ctime_ms,
        utime_ms=article.utime_ms,
    )


def summary_to_proto(summary: ArticleSummary) -> article_pb2.Article:
    """A list entry on the wire (no content)."""
    return article_pb2.Article(
        id=summary.id,
        title=summary.title,
        abstract=summary.abstract,
        author=article_pb2.Author(id=summary.author_id),
        status=article_pb2.ArticleStatus.ValueType(int(summary.status)),
        ctime_ms=summary.ctime_ms,
        utime_ms=summary.utime_ms,
    )


def published_to_proto(article: PublishedArticle) -> article_pb2.Article:
    """The reader's view on the wire (status always published)."""
    return article_pb2.Article(
        id=article.id,
        title=article.title,
        content=article.content,
        abstract=article.abstract,
        author=article_pb2.Author(id=article.author_id, name=article.author_name),
        status=article_pb2.ARTICLE_STATUS_PUBLISHED,
        ctime_ms=article.ctime_ms,
        utime_ms=article.utime_ms,
    )


class ArticleServicer(article_pb2_grpc.ArticleServiceServicer):
    """Serves the article service's RPCs on top of :class:`ArticleService`."""

    def __init__(self, service: ArticleService) -> None:
        self._service = service

    async def Save(
        self, request: article_pb2.SaveRequest, context: Context
    ) -> article_pb2.SaveResponse:
        """Create or update a draft."""
        article_id = await self._service.save(
            request.author_id, request.id, request.title, request.content
        )
        return article_pb2.SaveResponse(id=article_id)

    async def Publish(
        self, request: article_pb2.PublishRequest, context: Context
    ) -> article_pb2.PublishResponse:
        """Save and publish."""
        article_id = await self._service.publish(
            request.author_id, request.id, request.title, request.content
        )
        return article_pb2.PublishResponse(id=article_id)

    async def Withdraw(
        self, request: article_pb2.WithdrawRequest, context: Context
    ) -> article_pb2.WithdrawResponse:
        """Hide a published article from readers."""
        await self._service.withdraw(request.author_id, request.id)
        return article_pb2.WithdrawResponse()

    async def List(
        self, request: article_pb2.ListRequest, context: Context
    ) -> article_pb2.ListResponse:
        """The author's own articles, newest first."""
        items = await self._service.list_by_author(request.author_id, request.offset, request.limit)
        return article_pb2.ListResponse(articles=[summary_to_proto(i) for i in items])

    async def GetById(
        self, request: article_pb2.GetByIdRequest, context: Context
    ) -> article_pb2.GetByIdResponse:
        """One of the caller's own articles."""
        article = await self._service.get_by_id(request.author_id, request.id)
        return article_pb2.GetByIdResponse(article=article_to_proto(article))

    async def GetPublishedById(
        self, request: article_pb2.GetPublishedByIdRequest, context: Context
    ) -> article_pb2.GetPublishedByIdResponse:
        """A published article for a reader (counts a read)."""
        article = await self._service.get_published(request.id, request.uid)
        return article_pb2.GetPublishedByIdResponse(article=published_to_proto(article))

    async def PublishedExists(
        self, request: article_pb2.PublishedExistsRequest, context: Context
    ) -> article_pb2.PublishedExistsResponse:
        """Which of the requested articles are published (counts no read)."""
        published = await self._service.published_exists(request.ids)
        return article_pb2.PublishedExistsResponse(published_ids=sorted(published))

    async def GetPublishedAuthor(
        self, request: article_pb2.GetPublishedAuthorRequest, context: Context
    ) -> article_pb2.GetPublishedAuthorResponse:
        """Who wrote a published article, and its title (counts no read)."""
        author_id, title = await self._service.published_author(request.id)
        return article_pb2.GetPublishedAuthorResponse(author_id=author_id, title=title)

    async def ListPub(
        self, request: article_pb2.ListPubRequest, context: Context
    ) -> article_pb2.ListPubResponse:
        """Published articles by update time window, newest first."""
        articles = await self._service.list_published(
            request.start_time_ms, request.end_time_ms, request.offset, request.limit
        )
        return article_pb2.ListPubResponse(articles=[published_to_proto(a) for a in articles])
