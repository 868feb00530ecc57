"""Events the article service produces (one module per producer).

- ``TOPIC_ARTICLE_READ``: ``ArticleRead{article_id, user_id, at_ms}`` when a reader opened
  a published article (``user_id`` 0: anonymous);
- ``TOPIC_ARTICLE_PUBLISHED``: ``ArticlePublished{article_id, title, content, abstract,
  author_id, author_name, ctime_ms, utime_ms, at_ms}`` when a version became visible to
  readers;
- ``TOPIC_ARTICLE_WITHDRAWN``: ``ArticleWithdrawn{article_id, author_id, at_ms}`` when an
  article stopped being visible.

The topics, their broker names and payloads are declared in ``webook.events.v1.Topic``
(``protos/webook/events/v1/events.proto``), where consumers read them too: no name is
written here. All are keyed by the article id, which keeps one article's events in one
partition, in order.

Two paths (``docs/events.md``): publications and withdrawals are written to the
``article_outbox`` table in the transaction of the change (:mod:`kit.outbox`; the relay
publishes them at least once), so a crash never loses one and a withdrawn article never
stays searchable; reads, frequent and loss-tolerant, go through the buffered
:class:`kit.events.EventProducer`, which never blocks or fails a request. One writer,
:class:`KafkaArticleEvents`, serves both: it is given the producer, or the outbox bound to a
unit of work's session.
"""

from __future__ import annotations

from typing import Final, Protocol

from google.protobuf.message import Message

from kit.events import DeclaredTopic, TopicSpec, declared_topic, topic_name
from services.article.domain import PublishedArticle
from webook.events.v1 import events_pb2

ARTICLE_READ_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READ)
ARTICLE_PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
ARTICLE_WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)

OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (
    declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED),
    declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN),
)
"""The topics written through the outbox (the others go through the buffered producer)."""


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the buffered producer writes, with ``partitions`` partitions each."""
    return (TopicSpec(ARTICLE_READ_TOPIC, partitions),)


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


class EventSink(Protocol):
    """Where events go: ``EventProducer.publish`` or ``kit.outbox.OutboxSink.publish``."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class KafkaArticleEvents:
    """``ArticleReadEvents`` and ``ArticleChangeEvents`` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """Emit ``ArticleRead``."""
        self._sink.publish(
            ARTICLE_READ_TOPIC,
            article_id,
            events_pb2.ArticleRead(article_id=article_id, user_id=user_id, at_ms=at_ms),
        )

    def article_published(self, article: PublishedArticle, *, at_ms: int) -> None:
        """Emit ``ArticlePublished`` with the published version."""
        self._sink.publish(
            ARTICLE_PUBLISHED_TOPIC,
            article.id,
            events_pb2.ArticlePublished(
                article_id=article.id,
                title=article.title,
                content=article.content,
                abstract=article.abstract,
                author_id=article.author_id,
                author_name=article.author_name,
                ctime_ms=article.ctime_ms,
                utime_ms=article.utime_ms,
                at_ms=at_ms,
            ),
        )

    def article_withdrawn(self, article_id: int, author_id: int, *, at_ms: int) -> None:
        """Emit ``ArticleWithdrawn``."""
        self._sink.publish(
            ARTICLE_WITHDRAWN_TOPIC,
            article_id,
            events_pb2.ArticleWithdrawn(article_id=article_id, author_id=author_id, at_ms=at_ms),
        )
