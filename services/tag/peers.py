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

import logging
from typing import Protocol

from clients.article import CALL_FAILURES, describe_call_failure, published_author
from kit.grpcx.client import ServiceClients
from services.tag.errors import Reason, TagUnavailable

logger = logging.getLogger(__name__)


class ArticleOwners(Protocol):
    """Who owns articles."""

    async def author_of(self, article_id: int) -> int | None:
        """The author of article ``article_id``; ``None`` when there is no such (published)
        article.

        Raises :class:`TagUnavailable` when the article service cannot be asked.
        """
        ...


class RemoteArticleOwners:
    """:class:`ArticleOwners` on the article service's ``GetPublishedAuthor``."""

    def __init__(self, clients: ServiceClients, *, timeout_s: float) -> None:
        self._clients = clients
        self._timeout = timeout_s

    async def author_of(self, article_id: int) -> int | None:
        """The author; ``None`` on ``NOT_FOUND`` (absent, or not published now)."""
        try:
            return await published_author(self._clients, article_id, timeout_s=self._timeout)
        except CALL_FAILURES as exc:
            logger.warning(
                "peer call failed",
                extra={"call": "article GetPublishedAuthor", "error": describe_call_failure(exc)},
            )
            raise TagUnavailable(
                Reason.UNAVAILABLE, "the article service could not be asked, please retry"
            ) from exc
