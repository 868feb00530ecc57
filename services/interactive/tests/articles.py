"""A stand-in article service for interactive's tests: published articles and their authors.

:func:`stand_in_authors` serves ``ArticleService.PublishedExists`` (collects) and
``GetPublishedAuthor`` (likes; ARTICLE_NOT_FOUND unless published) from one function, on a
real port; any other method answers UNIMPLEMENTED. :class:`FakeAuthors` is the
:class:`services.interactive.service.ArticleAuthors` port in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from clients.article import TargetsUnavailable
from services.interactive.domain import ArticleOwner
from webook.article.v1 import article_pb2

AuthorOf = Callable[[int], int | None]
"""The author of a published article; ``None`` when it is not published."""


def title_of(article_id: int) -> str:
    """The title the stand-in gives article ``article_id``."""
    return f"article {article_id}"


@dataclass
class FakeAuthors:
    """Articles published by ``authors[article_id]``; ``down`` makes every question fail."""

    authors: dict[int, int] = field(default_factory=dict)
    down: bool = False
    asked: list[int] = field(default_factory=list)

    async def published_owner(self, article_id: int) -> ArticleOwner | None:
        """The owner of ``article_id`` if it is published here."""
        self.asked.append(article_id)
        if self.down:
            raise TargetsUnavailable("article service down (fake)")
        author = self.authors.get(article_id)
        return None if author is None else ArticleOwner(article_id=article_id, author_id=author)


@asynccontextmanager
async def stand_in_authors(author_of: AuthorOf) -> AsyncIterator[str]:
    """The address of a server answering ``PublishedExists`` and ``GetPublishedAuthor`` with
    ``author_of``."""

    async def published_exists(
        request: article_pb2.PublishedExistsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> article_pb2.PublishedExistsResponse:
        return article_pb2.PublishedExistsResponse(
            published_ids=[i for i in request.ids if author_of(i) is not None]
        )

    async def published_author(
        request: article_pb2.GetPublishedAuthorRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> article_pb2.GetPublishedAuthorResponse:
        author = author_of(request.id)
        if author is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such published article")
        return article_pb2.GetPublishedAuthorResponse(author_id=author, title=title_of(request.id))

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "webook.article.v1.ArticleService",
                {
                    "PublishedExists": grpc.unary_unary_rpc_method_handler(
                        published_exists,
                        request_deserializer=article_pb2.PublishedExistsRequest.FromString,
                        response_serializer=article_pb2.PublishedExistsResponse.SerializeToString,
                    ),
                    "GetPublishedAuthor": grpc.unary_unary_rpc_method_handler(
                        published_author,
                        request_deserializer=article_pb2.GetPublishedAuthorRequest.FromString,
                        response_serializer=(
                            article_pb2.GetPublishedAuthorResponse.SerializeToString
                        ),
                    ),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
