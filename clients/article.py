"""The article service as the owner of what can be liked, collected or commented on.

:class:`PublishedArticleTargets` implements :class:`Targets` with
``ArticleService.PublishedExists`` through :class:`kit.grpcx.client.ServiceClients`, with a
short per-call timeout since it sits on the write path. Any failure (no instance, timeout,
breaker open, refusal) becomes :class:`TargetsUnavailable`, and the write fails closed.

Keeping the hot path cheap: a "published" answer is remembered in process for ``ttl_s``
seconds (a popular article is asked about once per TTL, not once per like or comment). That
is the staleness it allows: an article withdrawn less than ``ttl_s`` ago may still take a
like, a collect or a comment from this replica. "Not published" is never remembered, so an
article can be interacted with as soon as it is published.

:func:`published_author` asks who wrote a published article (``GetPublishedAuthor``), for
the services that need the author: reward, tag; :func:`published_byline` adds its title,
for interactive's likes (the title goes into ``ArticleLiked``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

import grpc
from pydantic import BaseModel, Field

from kit.cache.memo import ExpiringMemo
from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from webook.article.v1 import article_pb2, article_pb2_grpc

logger = logging.getLogger(__name__)

# The service that owns articles (a workload name, as in the devstack catalog's peers).
ARTICLE_SERVICE: Final = "article"
# The ``biz`` of articles in likes, collects and comments.
ARTICLE_BIZ: Final = "article"
DEFAULT_TIMEOUT_S = 0.5
DEFAULT_TTL_S = 5.0
DEFAULT_MAX_ENTRIES = 10_000
# What a call to another service can fail with: a status, or no address configured at all.
CALL_FAILURES: Final = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


class ArticleTargetsSettings(BaseModel):
    """The settings of a service that asks the article service whether articles exist
    (a mixin of its settings class; ``WEBOOK_<SVC>_ARTICLE_TIMEOUT_SECONDS``, ...)."""

    # Deadline of one PublishedExists call (it sits on the write path).
    article_timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    # Seconds a "published" answer is trusted per replica (0: never remembered).
    published_cache_ttl_seconds: float = Field(default=DEFAULT_TTL_S, ge=0, le=300)
    # "Published" answers remembered at most.
    published_cache_entries: int = Field(default=DEFAULT_MAX_ENTRIES, ge=1)


class TargetsUnavailable(Exception):
    """Whether an object exists could not be learnt from its owner."""


class Targets(Protocol):
    """The owners of the objects users interact with (today: the article service)."""

    async def exists(self, biz: str, biz_id: int) -> bool:
        """Whether object ``(biz, biz_id)`` exists (an article: is published now).

        Raises :class:`TargetsUnavailable` when the owner cannot be asked.
        """
        ...


class PublishedArticleTargets:
    """Whether an article is published, from the article service, positives cached briefly.

    Args:
        clients: the process's channels to other services.
        timeout_s: deadline of one ``PublishedExists`` call.
        ttl_s: seconds a "published" answer is trusted (0: never remembered).
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
        self._published: ExpiringMemo[int, bool] = ExpiringMemo(
            ttl_s=ttl_s, max_entries=max_entries
        )

    @classmethod
    def from_settings(
        cls, clients: ServiceClients, settings: ArticleTargetsSettings
    ) -> PublishedArticleTargets:
        """Targets configured by a service's :class:`ArticleTargetsSettings`."""
        return cls(
            clients,
            timeout_s=settings.article_timeout_seconds,
            ttl_s=settings.published_cache_ttl_seconds,
            max_entries=settings.published_cache_entries,
        )

    async def exists(self, biz: str, biz_id: int) -> bool:
        """Whether article ``biz_id`` is published (``biz`` must be ``"article"``)."""
        if biz != ARTICLE_BIZ:
            raise ValueError(f"no owner known for biz {biz!r}")
        now = self._clock()
        if self._published.get(biz_id, now):
            return True
        try:
            stub = article_pb2_grpc.ArticleServiceStub(await self._clients.channel(ARTICLE_SERVICE))
            answer = await stub.PublishedExists(
                article_pb2.PublishedExistsRequest(ids=[biz_id]), timeout=self._timeout
            )
        except CALL_FAILURES as exc:
            logger.warning(
                "article existence unavailable",
                extra={"article_id": biz_id, "error": describe_call_failure(exc)},
            )
            raise TargetsUnavailable(describe_call_failure(exc)) from exc
        published = biz_id in answer.published_ids
        if published:
            self._published.put(biz_id, True, now)
        return published


def describe_call_failure(exc: BaseException) -> str:
    """One line for a log or an error message: the status and details of a failed call."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


async def published_author(
    clients: ServiceClients, article_id: int, *, timeout_s: float
) -> int | None:
    """The author of article ``article_id`` if it is published now, else ``None``
    (:func:`published_byline` without the title).

    Any other failure is raised as it came (one of :data:`CALL_FAILURES`): each caller
    turns it into its own "unavailable" error and fails closed.
    """
    byline = await published_byline(clients, article_id, timeout_s=timeout_s)
    return None if byline is None else byline[0]


async def published_byline(
    clients: ServiceClients, article_id: int, *, timeout_s: float
) -> tuple[int, str] | None:
    """The author and title of article ``article_id`` if it is published now, else ``None``
    (``ArticleService.GetPublishedAuthor``; ``NOT_FOUND`` is the answer "no").

    Any other failure is raised as it came (one of :data:`CALL_FAILURES`).
    """
    stub = article_pb2_grpc.ArticleServiceStub(await clients.channel(ARTICLE_SERVICE))
    try:
        answer = await stub.GetPublishedAuthor(
            article_pb2.GetPublishedAuthorRequest(id=article_id), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return int(answer.author_id), answer.title
