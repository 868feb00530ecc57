"""Kafka consumers of the feed service: article publications and withdrawals, likes and
follows.

Consumed (names from ``webook.events.v1.Topic``, ``docs/events.md``; no topic name is
written here) by two consumers, each in a group of its own so that neither holds the other
back (a publication's fan-out waits for the follow service; a like or a follow does not):

- :func:`article_event_consumer`, keyed by article id:

  - ``TOPIC_ARTICLE_PUBLISHED`` → :meth:`services.feed.service.FeedService.article_published`
    (recorded once per article, then pushed or left to be pulled);
  - ``TOPIC_ARTICLE_WITHDRAWN`` → :meth:`services.feed.service.FeedService.article_withdrawn`;

- :func:`interaction_event_consumer`:

  - ``TOPIC_ARTICLE_LIKED`` (keyed by article id) →
    :meth:`services.feed.service.FeedService.article_liked` (into the author's feed);
  - ``TOPIC_USER_FOLLOWED`` (keyed by the followee) →
    :meth:`services.feed.service.FeedService.user_followed` (into the followee's feed).

Events are applied one by one, in offset order. Every handler is idempotent (event ids,
inbox primary keys, a withdrawal that keeps the latest time), so a batch retried whole after
a failure (the follow service down, a database error) changes nothing twice, and a like or
follow delivered twice by its producer appears once. Records that do not decode (not the
topic's message, or naming no article or user) are skipped and counted by
:class:`kit.events.BatchConsumer` (``webook_kafka_consumed_total{result="undecodable"}``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    parse_event,
    topic_name,
)
from services.feed.domain import FeedEvent, Model, article_liked, article_published, user_followed
from webook.events.v1 import events_pb2

P = TypeVar("P")

PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)
LIKED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_LIKED)
FOLLOWED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_USER_FOLLOWED)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """An article withdrawn at ``at_ms``."""

    article_id: int
    at_ms: int


def decode_published(value: bytes) -> FeedEvent:
    """The feed event of an ``ArticlePublished``; ``ValueError`` if it is not one."""
    event = parse_event(events_pb2.ArticlePublished, value)
    if event.article_id <= 0 or event.author_id <= 0:
        raise ValueError(f"ArticlePublished without an article or author id: {event.article_id}")
    return article_published(event.author_id, event.article_id, event.title, event.at_ms)


def decode_withdrawn(value: bytes) -> Withdrawal:
    """An ``ArticleWithdrawn``; ``ValueError`` if it is not one."""
    event = parse_event(events_pb2.ArticleWithdrawn, value)
    if event.article_id <= 0:
        raise ValueError(f"ArticleWithdrawn without an article id: {event}")
    return Withdrawal(article_id=event.article_id, at_ms=event.at_ms)


def decode_liked(value: bytes) -> FeedEvent:
    """The feed event of an ``ArticleLiked`` (for the author); ``ValueError`` if it is not
    one."""
    event = parse_event(events_pb2.ArticleLiked, value)
    if event.article_id <= 0 or event.user_id <= 0 or event.author_id <= 0:
        raise ValueError(f"ArticleLiked without an article, user or author id: {event}")
    return article_liked(event.user_id, event.article_id, event.title, event.author_id, event.at_ms)


def decode_followed(value: bytes) -> FeedEvent:
    """The feed event of a ``UserFollowed`` (for the followee); ``ValueError`` if it is not
    one."""
    event = parse_event(events_pb2.UserFollowed, value)
    if event.follower <= 0 or event.followee <= 0:
        raise ValueError(f"UserFollowed without a follower or followee: {event}")
    return user_followed(event.follower, event.followee, event.at_ms)


class ArticleFeed(Protocol):
    """What the consumer drives (:class:`services.feed.service.FeedService`)."""

    async def article_published(self, event: FeedEvent) -> Model | None:
        """Record (and push) one publication."""
        ...

    async def article_withdrawn(self, article_id: int, at_ms: int) -> int:
        """Hide one article's events."""
        ...


class _EachInOrder(Generic[P]):
    """Batch handler: applies each event's payload in order; raises (to have the whole batch
    retried) if one fails, which the service's idempotent writes make safe."""

    def __init__(self, apply: Callable[[P], Awaitable[object]]) -> None:
        self._apply = apply

    async def __call__(self, batch: Sequence[ConsumedEvent[P]]) -> None:
        """Apply a batch."""
        for event in batch:
            await self._apply(event.payload)


class PublishedHandler(_EachInOrder[FeedEvent]):
    """Records (and pushes) each publication."""

    def __init__(self, feed: ArticleFeed) -> None:
        super().__init__(feed.article_published)


class WithdrawnHandler(_EachInOrder[Withdrawal]):
    """Hides each withdrawn article."""

    def __init__(self, feed: ArticleFeed) -> None:
        super().__init__(lambda w: feed.article_withdrawn(w.article_id, w.at_ms))


class InteractionFeed(Protocol):
    """What the interaction consumer drives (:class:`services.feed.service.FeedService`)."""

    async def article_liked(self, event: FeedEvent) -> bool:
        """Deliver one like to the article's author."""
        ...

    async def user_followed(self, event: FeedEvent) -> bool:
        """Deliver one new follower to the followee."""
        ...


class LikedHandler(_EachInOrder[FeedEvent]):
    """Delivers each like to its article's author."""

    def __init__(self, feed: InteractionFeed) -> None:
        super().__init__(feed.article_liked)


class FollowedHandler(_EachInOrder[FeedEvent]):
    """Delivers each new follower to the followee."""

    def __init__(self, feed: InteractionFeed) -> None:
        super().__init__(feed.user_followed)


def interaction_event_consumer(feed: InteractionFeed, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that turns likes and follows into their recipients' feed events."""
    return BatchConsumer(
        config,
        {
            LIKED_TOPIC: TopicHandler(decode_liked, LikedHandler(feed)),
            FOLLOWED_TOPIC: TopicHandler(decode_followed, FollowedHandler(feed)),
        },
    )


def article_event_consumer(feed: ArticleFeed, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that turns article publications and withdrawals into feed changes."""
    return BatchConsumer(
        config,
        {
            PUBLISHED_TOPIC: TopicHandler(decode_published, PublishedHandler(feed)),
            WITHDRAWN_TOPIC: TopicHandler(decode_withdrawn, WithdrawnHandler(feed)),
        },
    )
