"""The article service as interactive's likes see it: is the article published, by whom.

:class:`PublishedArticleAuthors` implements
:class:`services.interactive.service.ArticleAuthors` with ``ArticleService.GetPublishedAuthor``
(ARTICLE_NOT_FOUND unless the article is published now), so that the one call that checks a
like's target also names the author the ``ArticleLiked`` event goes to, and the title it
carries: no extra round trip per like. Collects keep
:class:`clients.article.PublishedArticleTargets`, which needs no author.

As that adapter does, a published answer is remembered in process for ``ttl_s`` seconds,
"not published" never: its author never changes, its title may (a republication), so a like
event carries a title at most ``ttl_s`` seconds old. Failures (no instance, timeout, breaker
open, refusal) become :class:`clients.article.TargetsUnavailable`, and the like fails
closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from clients.article import (
    CALL_FAILURES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TTL_S,
    ArticleTargetsSettings,
    TargetsUnavailable,
    describe_call_failure,
    published_byline,
)
from kit.cache.memo import ExpiringMemo
from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.interactive.domain import ArticleOwner

logger = logging.getLogger(__name__)

_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


class PublishedArticleAuthors:
    """Who wrote an article if it is published, from the article service, cached briefly.

    Args:
        clients: the process's channels to other services.
        timeout_s: deadline of one ``GetPublishedAuthor`` call (it sits on the write path).
        ttl_s: seconds a published answer is trusted (0: never remembered).
        max_entries: answers remembered at most (the oldest dropped first).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        clients: ServiceClients,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._timeout = timeout_s
        self._clock = clock
        self._published: ExpiringMemo[int, ArticleOwner] = ExpiringMemo(
            ttl_s=ttl_s, max_entries=max_entries
        )

    @classmethod
    def from_settings(
        cls, clients: ServiceClients, settings: ArticleTargetsSettings
    ) -> PublishedArticleAuthors:
        """Authors configured as the service's targets are (the same timeout and memory)."""
        return cls(
            clients,
            timeout_s=settings.article_timeout_seconds,
            ttl_s=settings.published_cache_ttl_seconds,
            max_entries=settings.published_cache_entries,
        )

    async def published_owner(self, article_id: int) -> ArticleOwner | None:
        """The owner of article ``article_id`` if it is published now, else ``None``.

        Raises :class:`TargetsUnavailable` when the article service cannot be asked.
        """
        now = self._clock()
        remembered = self._published.get(article_id, now)
        if remembered is not None:
            return remembered
        try:
            byline = await published_byline(self._clients, article_id, timeout_s=self._timeout)
        except CALL_FAILURES as exc:
            why = describe_call_failure(exc)
            logger.warning(
                "article author unavailable", extra={"article_id": article_id, "error": why}
            )
            raise TargetsUnavailable(why) from exc
        if byline is None:
            return None
        owner = ArticleOwner(article_id=article_id, author_id=byline[0], title=byline[1])
        self._published.put(article_id, owner, now)
        return owner
