"""Events of the interactive service: read events in (read counts), new likes out.

**Produced**: ``TOPIC_ARTICLE_LIKED`` (``ArticleLiked{article_id, user_id, author_id, title,
at_ms}``, keyed by article id; :class:`KafkaLikeEvents`) when a user's like of an article is
new (a repeated like, a cancel and likes of other kinds of object publish nothing), after
the like committed. ``author_id`` comes from the like's own target check
(:mod:`services.interactive.peers`), and so does ``title``.

It goes through the buffered producer (:class:`kit.events.EventProducer`), not an outbox:
the interactive tables may be under a live migration (:mod:`kit.migrator`,
docs/interactive.md "Migrating the tables"), where a unit of work commits on whichever
database the mode makes first and the migration moves only the service's own tables, so an
outbox table would be written on both databases and drained on neither reliably. What it
guarantees: an event is handed over only for a committed new like and never blocks or fails
the like; it is delivered at least once while the process lives (retried through broker
outages, resent within the replay window), and lost if the process dies with it buffered or
the buffer overflows in a long outage. A lost like costs one missing "liked your article"
entry in the author's feed; a duplicate costs nothing (the feed keys it by user and article).

**Consumed**: read events become read counts.

The article service publishes ``webook.events.v1.ArticleReads`` to
:data:`ARTICLE_READS_TOPIC`: the reads of a short window in one record (keyed by the batch's
number). Article processes from before read batches published one ``ArticleRead`` per read
to :data:`ARTICLE_READ_TOPIC`, keyed by article id; that topic is still consumed, so the
reads such a process sends during an upgrade are counted too (upgrade interactive first).
Both names come from ``webook.events.v1.Topic``, where the producer reads them too
(``docs/events.md``). The consumer group :data:`READ_COUNTER_GROUP` applies them in batches
(up to 100 records or 1 second by default): a batch's reads are aggregated per article and
added with **one** SQL statement, and the offsets are committed only after that statement
committed. The batch's span links to the reads' ``PRODUCER`` spans (their ``traceparent``,
at most 128) when it is recorded.

Delivery is at-least-once, so counts may over-count, never under-count: a crash or a lost
partition between the SQL commit and the offset commit re-applies that one batch, so
duplicates are bounded by one batch (``max_batch`` records) per such event. A graceful stop
finishes and commits the batch in hand, so a restart adds nothing.

Records that decode to no read naming an article are skipped and counted
(``webook_kafka_consumed_total{result="undecodable"}``); in a batch record, reads that name
no article are dropped and the others counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final, Protocol

from google.protobuf.message import Message
from opentelemetry import trace

from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    TopicSpec,
    declared_topic,
    parse_event,
    topic_name,
)
from kit.events.tracing import traceparent_links
from services.interactive.domain import ARTICLE_BIZ as ARTICLE_BIZ
from services.interactive.domain import ArticleOwner
from services.interactive.service import InteractiveService
from webook.events.v1 import events_pb2

ARTICLE_READ_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READ)
ARTICLE_READS_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READS)
READ_COUNTER_GROUP = "interactive-read-counter"
ARTICLE_LIKED: Final = declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_LIKED)


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics this service writes, with ``partitions`` partitions each."""
    return (TopicSpec(ARTICLE_LIKED.name, partitions),)


class EventSink(Protocol):
    """Where events go: ``EventProducer.publish`` (or a test's recorder)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class KafkaLikeEvents:
    """:class:`services.interactive.service.LikeEvents` on an :class:`EventSink`."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def article_liked(self, owner: ArticleOwner, uid: int, *, at_ms: int) -> None:
        """Hand ``ArticleLiked`` over (keyed by the article id); the producer counts what it
        drops."""
        self._sink.publish(
            ARTICLE_LIKED.name,
            owner.article_id,
            events_pb2.ArticleLiked(
                article_id=owner.article_id,
                user_id=uid,
                author_id=owner.author_id,
                title=owner.title,
                at_ms=at_ms,
            ),
        )


def decode_article_read(value: bytes) -> events_pb2.ArticleRead:
    """An ``ArticleRead`` that names an article; raises ``ValueError`` otherwise."""
    event = parse_event(events_pb2.ArticleRead, value)
    if event.article_id <= 0:
        raise ValueError(f"ArticleRead without an article id: {event}")
    return event


def decode_article_reads(value: bytes) -> events_pb2.ArticleReads:
    """The reads of an ``ArticleReads`` that name an article; raises ``ValueError`` if none
    does."""
    batch = parse_event(events_pb2.ArticleReads, value)
    kept = [read for read in batch.reads if read.article_id > 0]
    if not kept:
        raise ValueError("ArticleReads without a read that names an article")
    return batch if len(kept) == len(batch.reads) else events_pb2.ArticleReads(reads=kept)


class ReadCounter:
    """Batch handler of both read topics: adds each article's reads with one statement."""

    def __init__(self, service: InteractiveService) -> None:
        self._service = service

    async def __call__(
        self,
        batch: Sequence[ConsumedEvent[events_pb2.ArticleReads]]
        | Sequence[ConsumedEvent[events_pb2.ArticleRead]],
    ) -> None:
        """Apply a batch of reads (single reads, batches of reads, or both)."""
        reads = [
            read
            for event in batch
            for read in (
                event.payload.reads
                if isinstance(event.payload, events_pb2.ArticleReads)
                else (event.payload,)
            )
        ]
        span = trace.get_current_span()
        if span.is_recording():
            for link in traceparent_links(read.traceparent for read in reads):
                span.add_link(link.context)
        await self._service.add_reads(ARTICLE_BIZ, Counter(read.article_id for read in reads))


def read_event_consumer(service: InteractiveService, config: ConsumerConfig) -> BatchConsumer:
    """The consumer that counts article reads (``config.group_id`` normally
    :data:`READ_COUNTER_GROUP`), from batches and from single reads."""
    counter = ReadCounter(service)
    return BatchConsumer(
        config,
        {
            ARTICLE_READS_TOPIC: TopicHandler(decode_article_reads, counter),
            ARTICLE_READ_TOPIC: TopicHandler(decode_article_read, counter),
        },
    )
