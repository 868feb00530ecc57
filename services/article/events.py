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
partition, in order. Events go through :class:`kit.events.EventProducer`: publishing never
blocks or fails a request.
"""

from __future__ import annotations

from typing import Final

from kit.events import EventProducer, TopicSpec, topic_name
from services.article.domain import PublishedArticle
from webook.events.v1 import events_pb2

ARTICLE_READ_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READ)
ARTICLE_PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
ARTICLE_WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics this service writes, with ``partitions`` partitions each."""
    return tuple(
        TopicSpec(name, partitions)
        for name in (ARTICLE_READ_TOPIC, ARTICLE_PUBLISHED_TOPIC, ARTICLE_WITHDRAWN_TOPIC)
    )


class KafkaArticleEvents:
    """``ArticleEvents`` on a Kafka producer."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """Emit ``ArticleRead``."""
        self._producer.publish(
            ARTICLE_READ_TOPIC,
            article_id,
            events_pb2.ArticleRead(article_id=article_id, user_id=user_id, at_ms=at_ms),
        )

    def article_published(self, article: PublishedArticle, *, at_ms: int) -> None:
        """Emit ``ArticlePublished`` with the published version."""
        self._producer.publish(
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
        self._producer.publish(
            ARTICLE_WITHDRAWN_TOPIC,
            article_id,
            events_pb2.ArticleWithdrawn(article_id=article_id, author_id=author_id, at_ms=at_ms),
        )
