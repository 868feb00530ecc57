"""Events the article service produces, and their topics (one module per producer).

- ``webook.article.read``: ``ArticleRead{article_id, user_id, at_ms}`` when a reader opened
  a published article (``user_id`` 0: anonymous);
- ``webook.article.published``: ``ArticlePublished{article_id, title, content, abstract,
  author_id, author_name, ctime_ms, utime_ms, at_ms}`` when a version became visible to
  readers;
- ``webook.article.withdrawn``: ``ArticleWithdrawn{article_id, author_id, at_ms}`` when an
  article stopped being visible.

All are ``webook.events.v1`` protobuf messages keyed by the article id, which keeps one
article's events in one partition, in order. Events go through
:class:`kit.events.EventProducer`: publishing never blocks or fails a request.
Consumers (the interactive service counts reads) declare these topic names themselves,
since services do not import each other; ``docs/events.md`` is the contract.
"""

from __future__ import annotations

from kit.events import EventProducer, TopicSpec
from services.article.domain import PublishedArticle
from webook.events.v1 import events_pb2

ARTICLE_READ_TOPIC = "webook.article.read"
ARTICLE_PUBLISHED_TOPIC = "webook.article.published"
ARTICLE_WITHDRAWN_TOPIC = "webook.article.withdrawn"


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
