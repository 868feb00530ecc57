"""Kafka consumers of the interactive service: read events become read counts.

The article service publishes ``webook.events.v1.ArticleRead`` to
:data:`ARTICLE_READ_TOPIC`, keyed by article id; the name comes from
``webook.events.v1.Topic``, where the producer reads it too (``docs/events.md``). The
consumer group
:data:`READ_COUNTER_GROUP` applies them in batches (up to 100 records or 1 second by
default): a batch is aggregated per article and added with **one** SQL statement, and the
offsets are committed only after that statement committed.

Delivery is at-least-once, so counts may over-count, never under-count: a crash or a lost
partition between the SQL commit and the offset commit re-applies that one batch, so
duplicates are bounded by one batch (``max_batch`` reads) per such event. A graceful stop
finishes and commits the batch in hand, so a restart adds nothing.

Records that are not an ``ArticleRead``, or name no article, are skipped and counted
(``webook_kafka_consumed_total{result="undecodable"}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final

from google.protobuf.message import DecodeError

from kit.events import BatchConsumer, ConsumedEvent, ConsumerConfig, TopicHandler, topic_name
from services.interactive.domain import ARTICLE_BIZ as ARTICLE_BIZ
from services.interactive.service import InteractiveService
from webook.events.v1 import events_pb2

ARTICLE_READ_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READ)
READ_COUNTER_GROUP = "interactive-read-counter"


def decode_article_read(value: bytes) -> events_pb2.ArticleRead:
    """An ``ArticleRead`` that names an article; raises ``ValueError`` otherwise."""
    if value is None:
        raise ValueError("record has no value")
    try:
        event = events_pb2.ArticleRead.FromString(value)
    except DecodeError as exc:
        raise ValueError(f"not an ArticleRead: {exc}") from exc
    if event.article_id <= 0:
        raise ValueError(f"ArticleRead without an article id: {event}")
    return event


class ReadCounter:
    """Batch handler: adds each article's reads with one statement."""

    def __init__(self, service: InteractiveService) -> None:
        self._service = service

    async def __call__(self, batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        """Apply a batch of reads."""
        reads = Counter(event.payload.article_id for event in batch)
        await self._service.add_reads(ARTICLE_BIZ, reads)


def read_event_consumer(service: InteractiveService, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that counts article reads (``config.group_id`` normally
    :data:`READ_COUNTER_GROUP`)."""
    return BatchConsumer(
        config, {ARTICLE_READ_TOPIC: TopicHandler(decode_article_read, ReadCounter(service))}
    )
