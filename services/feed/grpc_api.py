"""gRPC servicer of ``webook.feed.v1.FeedService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.feed.service.FeedService` call; input is
validated there (uid, limit bounds, the cursor), and refusals are
:class:`kit.errors.AppError` subclasses that the server's error interceptor turns into
status codes with a ``google.rpc.ErrorInfo`` reason (a bad cursor: ``INVALID_ARGUMENT``,
``FEED_INVALID_CURSOR``).
"""

from __future__ import annotations

from typing import Any

import grpc

from services.feed.domain import EventKind, FeedEvent
from services.feed.service import FeedService
from webook.feed.v1 import feed_pb2, feed_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def feed_event_message(event: FeedEvent) -> feed_pb2.FeedEvent:
    """The wire form of a feed entry."""
    message = feed_pb2.FeedEvent(event_id=event.event_id, at_ms=event.at_ms)
    if event.kind is EventKind.ARTICLE_PUBLISHED:
        message.article_published.CopyFrom(
            feed_pb2.ArticlePublishedItem(
                actor=event.actor, article_id=event.article_id, title=event.title
            )
        )
    elif event.kind is EventKind.ARTICLE_LIKED:
        message.article_liked.CopyFrom(
            feed_pb2.ArticleLikedItem(
                actor=event.actor,
                article_id=event.article_id,
                title=event.title,
                recipient=event.recipient,
            )
        )
    else:
        message.user_followed.CopyFrom(
            feed_pb2.UserFollowedItem(actor=event.actor, recipient=event.recipient)
        )
    return message


class FeedServicer(feed_pb2_grpc.FeedServiceServicer):
    """Serves the feed service's RPCs on top of :class:`FeedService`."""

    def __init__(self, service: FeedService) -> None:
        self._service = service

    async def GetFeed(
        self, request: feed_pb2.GetFeedRequest, context: Context
    ) -> feed_pb2.GetFeedResponse:
        """A page of the reader's feed."""
        page = await self._service.get_feed(request.uid, request.cursor, request.limit)
        return feed_pb2.GetFeedResponse(
            events=[feed_event_message(event) for event in page.events],
            next_cursor=page.next_cursor,
        )
