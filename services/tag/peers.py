"""What the tag service needs from other services, as a port, and its gRPC adapter.

:class:`ArticleOwners` (the service layer depends on it only; tests give an in-memory
fake) says who owns an article: only its author may tag it. :class:`RemoteArticleOwners`
asks the article service's ``GetPublishedAuthor`` (counts no read) through
:class:`kit.grpcx.client.ServiceClients` (discovery, balancing, governance) with a per-call
timeout. ``NOT_FOUND`` (no such article, or not published now) becomes ``None``; any other
failure (no instance, timeout, breaker open, refusal) becomes
:class:`~services.tag.errors.TagUnavailable`, so a tag change fails closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.tag.errors import Reason, TagUnavailable
from webook.article.v1 import article_pb2, article_pb2_grpc

logger = logging.getLogger(__name__)

ARTICLE_SERVICE: Final = "article"
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


class ArticleOwners(Protocol):
    """Who owns articles."""

    async def author_of(self, article_id: int) -> int | None:
        """The author of article ``article_id``; ``None`` when there is no such (published)
        article.

        Raises :class:`TagUnavailable` when the article service cannot be asked.
        """
        ...


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


class RemoteArticleOwners:
    """:class:`ArticleOwners` on the article service's ``GetPublishedAuthor``."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def author_of(self, article_id: int) -> int | None:
        """The author; ``None`` on ``NOT_FOUND`` (absent, or not published now)."""
        try:
            stub = article_pb2_grpc.ArticleServiceStub(await self._clients.channel(ARTICLE_SERVICE))
            answer = await stub.GetPublishedAuthor(
                article_pb2.GetPublishedAuthorRequest(id=article_id), timeout=self._timeout
            )
        except _CALL_FAILURES as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            logger.warning(
                "peer call failed",
                extra={"call": "article GetPublishedAuthor", "error": _describe(exc)},
            )
            raise TagUnavailable(
                Reason.UNAVAILABLE, "the article service could not be asked, please retry"
            ) from exc
        return int(answer.author_id)
