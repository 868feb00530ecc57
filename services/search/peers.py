"""Adapters to the source services the reindexer reads (ports of :mod:`services.search.service`).

All three go through :class:`kit.grpcx.client.ServiceClients` (balanced, governed channels):

- :class:`ArticleServicePublished` implements ``PublishedArticles`` with the article
  service's ``ListPub`` (newest update first, pages of at most 100). It pages by **update
  time** rather than by a growing offset: each next page asks for articles updated before
  the oldest one seen, skipping the ones already seen at exactly that time. An article
  updated during the rebuild moves out of the window instead of shifting every later page
  (its new version arrives as an event anyway).
- :class:`UserServiceDirectory` implements ``UserDirectory`` with the user service's
  internal ``ListUsers`` keyset pages (id order).
- :class:`TagServiceTagSets` implements ``TaggedArticles`` with the tag service's
  ``ListTagSets`` keyset pages (article id order): every article's current tag set, emptied
  ones included, so a rebuild from nothing has the tags whose events the topic no longer
  holds.

A failed call (status, timeout, no address) becomes :class:`SearchUnavailable`
(``SEARCH_SOURCE_UNAVAILABLE``): the rebuild stops and can simply be run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, TypeVar

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from services.search.analysis import html_to_text
from services.search.domain import (
    ArticleDoc,
    Retag,
    UserDoc,
    article_doc,
    user_doc,
)
from services.search.errors import Reason, SearchInvalidArgument, SearchUnavailable
from services.search.events import ARTICLE_BIZ, retag_of
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.tag.v1 import tag_pb2, tag_pb2_grpc
from webook.user.v1 import user_pb2, user_pb2_grpc

ARTICLE_SERVICE: Final = "article"
USER_SERVICE: Final = "user"
TAG_SERVICE: Final = "tag"
TAG_PAGE_MAX: Final = 100
"""The largest page ``ListTagSets`` serves."""
_CALL_FAILURES = (grpc.aio.AioRpcError, AppError, asyncio.TimeoutError)


def _unavailable(service: str, exc: BaseException) -> SearchUnavailable:
    if isinstance(exc, grpc.aio.AioRpcError):
        detail = f"{exc.code().name}: {exc.details()}"
    else:
        detail = repr(exc)
    return SearchUnavailable(
        Reason.SOURCE_UNAVAILABLE,
        f"the {service} service could not be read ({detail})",
        metadata={"service": service},
    )


Item = TypeVar("Item")


async def _keyset_pages(
    clients: ServiceClients,
    service: str,
    fetch: Callable[[grpc.aio.Channel, int], Awaitable[Sequence[Item]]],
    key: Callable[[Item], int],
    page_size: int,
) -> AsyncIterator[Item]:
    """Every item of a keyset listing at ``service``: ``fetch(channel, after)`` pages from
    after 0, then after the last item's ``key``, until a page shorter than ``page_size``; a
    failed call raises :class:`SearchUnavailable`."""
    after = 0
    while True:
        try:
            items = await fetch(await clients.channel(service), after)
        except _CALL_FAILURES as exc:
            raise _unavailable(service, exc) from exc
        for item in items:
            yield item
        if len(items) < page_size:
            return
        after = key(items[-1])


def article_from_proto(article: article_pb2.Article) -> ArticleDoc | None:
    """The indexed form of a published article (``None``: nothing indexable)."""
    try:
        return article_doc(
            article_id=article.id,
            title=article.title,
            body=html_to_text(article.content),
            author_id=article.author.id,
            author_name=article.author.name,
            utime_ms=article.utime_ms,
        )
    except SearchInvalidArgument:
        return None


def retag_from_proto(resource: tag_pb2.ResourceTags) -> Retag | None:
    """The retag of an article's listed tag set (``None``: not an article's, or no version)."""
    try:
        return retag_of(resource)
    except ValueError:
        return None


def user_from_proto(user: user_pb2.User) -> UserDoc | None:
    """The indexed form of a user (``None``: nothing indexable)."""
    try:
        return user_doc(
            user_id=user.id, nickname=user.nickname, about_me=user.about_me, utime_ms=user.utime_ms
        )
    except SearchInvalidArgument:
        return None


class ArticleServicePublished:
    """Every published article, newest first, from ``ArticleService.ListPub``."""

    def __init__(self, clients: ServiceClients, *, page_size: int = 100, timeout_s: float) -> None:
        self._clients = clients
        self._page_size = page_size
        self._timeout = timeout_s

    async def published(self, *, before_ms: int) -> AsyncIterator[ArticleDoc]:
        """Articles updated before ``before_ms``, newest first, each once."""
        end_ms = before_ms
        # Ids already yielded whose update time is exactly end_ms - 1 (the page boundary).
        seen_at_boundary = 0
        while end_ms > 0:
            try:
                stub = article_pb2_grpc.ArticleServiceStub(
                    await self._clients.channel(ARTICLE_SERVICE)
                )
                answer = await stub.ListPub(
                    article_pb2.ListPubRequest(
                        end_time_ms=end_ms, offset=seen_at_boundary, limit=self._page_size
                    ),
                    timeout=self._timeout,
                )
            except _CALL_FAILURES as exc:
                raise _unavailable(ARTICLE_SERVICE, exc) from exc
            articles = list(answer.articles)
            for article in articles:
                doc = article_from_proto(article)
                if doc is not None:
                    yield doc
            if len(articles) < self._page_size:
                return
            oldest = articles[-1].utime_ms
            same = sum(1 for a in articles if a.utime_ms == oldest)
            if oldest + 1 == end_ms:
                seen_at_boundary += same
            else:
                end_ms, seen_at_boundary = oldest + 1, same


class UserServiceDirectory:
    """Every user, in id order, from ``UserService.ListUsers``."""

    def __init__(self, clients: ServiceClients, *, page_size: int = 500, timeout_s: float) -> None:
        self._clients = clients
        self._page_size = page_size
        self._timeout = timeout_s

    async def users(self) -> AsyncIterator[UserDoc]:
        """Every user, each once."""
        async for user in _keyset_pages(
            self._clients, USER_SERVICE, self._page, lambda u: u.id, self._page_size
        ):
            doc = user_from_proto(user)
            if doc is not None:
                yield doc

    async def _page(self, channel: grpc.aio.Channel, after_id: int) -> Sequence[user_pb2.User]:
        answer = await user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(after_id=after_id, limit=self._page_size),
            timeout=self._timeout,
        )
        return answer.users


class TagServiceTagSets:
    """Every article's tag set, in article id order, from ``TagService.ListTagSets``."""

    def __init__(
        self, clients: ServiceClients, *, page_size: int = TAG_PAGE_MAX, timeout_s: float
    ) -> None:
        self._clients = clients
        self._page_size = min(page_size, TAG_PAGE_MAX)
        self._timeout = timeout_s

    async def tag_sets(self) -> AsyncIterator[Retag]:
        """Each article's current tag set once, emptied sets included."""
        async for resource in _keyset_pages(
            self._clients, TAG_SERVICE, self._page, lambda r: r.biz_id, self._page_size
        ):
            retag = retag_from_proto(resource)
            if retag is not None:
                yield retag

    async def _page(
        self, channel: grpc.aio.Channel, after_id: int
    ) -> Sequence[tag_pb2.ResourceTags]:
        answer = await tag_pb2_grpc.TagServiceStub(channel).ListTagSets(
            tag_pb2.ListTagSetsRequest(
                biz=ARTICLE_BIZ, after_biz_id=after_id, limit=self._page_size
            ),
            timeout=self._timeout,
        )
        return answer.resources
