"""Kafka consumers of the feed service: article publications and withdrawals.

Consumed (names from ``webook.events.v1.Topic``, ``docs/events.md``; no topic name is
written here), both keyed by article id:

- ``TOPIC_ARTICLE_PUBLISHED`` → :meth:`services.feed.service.FeedService.article_published`
  (recorded once per article, then pushed or left to be pulled);
- ``TOPIC_ARTICLE_WITHDRAWN`` → :meth:`services.feed.service.FeedService.article_withdrawn`.

Events are applied one by one, in offset order. Every handler is idempotent (event ids,
inbox primary keys, a withdrawal that keeps the latest time), so a batch retried whole after
a failure (the follow service down, a database error) changes nothing twice. Records that
do not decode are skipped and counted by :class:`kit.events.BatchConsumer`
(``webook_kafka_consumed_total{result="undecodable"}``).

The like and follow events (``article_liked``, ``user_followed``) have no topic yet; the
service's handlers for them are ready (docs/feed.md, "Plan").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from kit.events import BatchConsumer, ConsumedEvent, ConsumerConfig, TopicHandler, topic_name
from services.feed.domain import FeedEvent, Model, article_published
from webook.events.v1 import events_pb2

PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """An article withdrawn at ``at_ms``."""

    article_id: int
    at_ms: int


def decode_published(value: bytes) -> FeedEvent:
    """The feed event of an ``ArticlePublished``; ``ValueError`` if it is not one."""
    if value is None:
        raise ValueError("record has no value")
    try:
        event = events_pb2.ArticlePublished.FromString(value)
    except DecodeError as exc:
        raise ValueError(f"not an ArticlePublished: {exc}") from exc
    if event.article_id <= 0 or event.author_id <= 0:
        raise ValueError(f"ArticlePublished without an article or author id: {event.article_id}")
    return article_published(event.author_id, event.article_id, event.title, event.at_ms)


def decode_withdrawn(value: bytes) -> Withdrawal:
    """An ``ArticleWithdrawn``; ``ValueError`` if it is not one."""
    if value is None:
        raise ValueError("record has no value")
    try:
        event = events_pb2.ArticleWithdrawn.FromString(value)
    except DecodeError as exc:
        raise ValueError(f"not an ArticleWithdrawn: {exc}") from exc
    if event.article_id <= 0:
        raise ValueError(f"ArticleWithdrawn without an article id: {event}")
    return Withdrawal(article_id=event.article_id, at_ms=event.at_ms)


class ArticleFeed(Protocol):
    """What the consumer drives (:class:`services.feed.service.FeedService`)."""

    async def article_published(self, event: FeedEvent) -> Model | None:
        """Record (and push) one publication."""
        ...

    async def article_withdrawn(self, article_id: int, at_ms: int) -> int:
        """Hide one article's events."""
        ...


class PublishedHandler:
    """Batch handler: records each publication, in order."""

    def __init__(self, feed: ArticleFeed) -> None:
        self._feed = feed

    async def __call__(self, batch: Sequence[ConsumedEvent[FeedEvent]]) -> None:
        """Apply a batch (raises, to have it retried, if a write or the follower count fails)."""
        for event in batch:
            await self._feed.article_published(event.payload)


class WithdrawnHandler:
    """Batch handler: hides each withdrawn article."""

    def __init__(self, feed: ArticleFeed) -> None:
        self._feed = feed

    async def __call__(self, batch: Sequence[ConsumedEvent[Withdrawal]]) -> None:
        """Apply a batch (raises, to have it retried, if a write fails)."""
        for event in batch:
            await self._feed.article_withdrawn(event.payload.article_id, event.payload.at_ms)


def article_event_consumer(feed: ArticleFeed, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that turns article publications and withdrawals into feed changes."""
    return BatchConsumer(
        config,
        {
            PUBLISHED_TOPIC: TopicHandler(decode_published, PublishedHandler(feed)),
            WITHDRAWN_TOPIC: TopicHandler(decode_withdrawn, WithdrawnHandler(feed)),
        },
    )
