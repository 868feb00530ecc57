"""Events the article service produces (one module per producer).

- ``TOPIC_ARTICLE_READS``: ``ArticleReads{reads}``, the ``ArticleRead{article_id, user_id,
  at_ms, traceparent}`` of every reader who opened a published article (``user_id`` 0:
  anonymous) within a short window, in one record (:class:`ReadBatcher`);
- ``TOPIC_ARTICLE_PUBLISHED``: ``ArticlePublished{article_id, title, content, abstract,
  author_id, author_name, ctime_ms, utime_ms, at_ms}`` when a version became visible to
  readers;
- ``TOPIC_ARTICLE_WITHDRAWN``: ``ArticleWithdrawn{article_id, author_id, at_ms}`` when an
  article stopped being visible.

The topics, their broker names and payloads are declared in ``webook.events.v1.Topic``
(``protos/webook/events/v1/events.proto``), where consumers read them too: no name is
written here. Publications and withdrawals are keyed by the article id, which keeps one
article's events in one partition, in order; read batches by their number in the process,
which spreads them over the partitions (counting reads needs no order).

Two paths (``docs/events.md``): publications and withdrawals are written to the
``article_outbox`` table in the transaction of the change (:mod:`kit.outbox`; the relay
publishes them at least once), so a crash never loses one and a withdrawn article never
stays searchable (:class:`KafkaArticleEvents`, given the outbox bound to a unit of work's
session); reads, frequent and loss-tolerant, are gathered by :class:`ReadBatcher` and go
through the buffered :class:`kit.events.EventProducer`, which never blocks or fails a
request. One record per window instead of one per read: the producer, the broker and the
consumer each pay per record (``docs/performance.md``, "The read path goal").

A read carries the ``traceparent`` of a ``PRODUCER`` span started inside the reading request
when that request's trace is sampled, since one record's headers cannot carry one trace per
read; the consumer links its batch span to them.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Final, Protocol

from google.protobuf.message import Message
from opentelemetry import trace

from kit.events import DeclaredTopic, TopicSpec, declared_topic, topic_name
from kit.events.tracing import TRACER_NAME, publish_trace_headers
from services.article.domain import PublishedArticle
from services.article.metrics import READS_DROPPED, READS_SENT
from webook.events.v1 import events_pb2

ARTICLE_READS_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_READS)
ARTICLE_PUBLISHED_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED)
ARTICLE_WITHDRAWN_TOPIC: Final = topic_name(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)

OUTBOX_TOPICS: Final[tuple[DeclaredTopic, ...]] = (
    declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_PUBLISHED),
    declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN),
)
"""The topics written through the outbox (the others go through the buffered producer)."""


def topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the buffered producer writes, with ``partitions`` partitions each."""
    return (TopicSpec(ARTICLE_READS_TOPIC, partitions),)


def outbox_topic_specs(partitions: int) -> tuple[TopicSpec, ...]:
    """The topics the outbox relay writes, with ``partitions`` partitions each."""
    return tuple(TopicSpec(topic.name, partitions) for topic in OUTBOX_TOPICS)


class EventSink(Protocol):
    """Where events go: ``EventProducer.publish`` or ``kit.outbox.OutboxSink.publish``."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Hand ``event`` over; ``False`` if it was dropped."""
        ...


class ReadBatcher:
    """``ArticleReadEvents`` that gathers reads into one ``ArticleReads`` record per window.

    The first read of a batch opens a window of ``window_s`` seconds; when it ends, or as
    soon as the batch holds ``max_reads``, the batch is handed to ``sink`` (the buffered
    producer) as one event keyed by its number. ``window_s`` 0 hands each read over alone.
    ``webook_article_reads_total{result}`` counts the reads handed over and those whose
    batch the producer dropped. A component of the process: registered to start before
    serving after the producer, it stops (handing over what it holds) after the drain and
    before the producer flushes, so the reads of drained calls are sent too. What it holds
    when the process dies is lost, as the producer's buffer is: read counts tolerate it.

    Args:
        sink: where batches go.
        window_s: how long a batch gathers reads.
        max_reads: the most reads in one batch (a record stays well under the broker's limit).
        tracer_provider: where the reads' ``PRODUCER`` spans go (the global provider).
    """

    def __init__(
        self,
        sink: EventSink,
        *,
        window_s: float,
        max_reads: int = 1000,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if window_s < 0 or max_reads < 1:
            raise ValueError("window_s must be >= 0 and max_reads >= 1")
        self._sink = sink
        self._window_s = window_s
        self._max_reads = max_reads
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._reads: list[events_pb2.ArticleRead] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sequence = 0

    @property
    def pending(self) -> int:
        """Reads gathered and not yet handed over."""
        return len(self._reads)

    def start(self) -> None:
        """Nothing to start: the first read of a batch opens its window."""

    def stop(self) -> None:
        """Hand over the batch in hand."""
        self.flush()

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """Add the read to the batch (never blocks or raises)."""
        self._reads.append(
            events_pb2.ArticleRead(
                article_id=article_id,
                user_id=user_id,
                at_ms=at_ms,
                traceparent=self._traceparent(),
            )
        )
        if len(self._reads) >= self._max_reads or self._window_s == 0:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            # In an empty context: the batch is nobody's request.
            self._timer = loop.call_later(self._window_s, self.flush, context=contextvars.Context())

    def flush(self) -> None:
        """Hand the batch over now (nothing if it is empty)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._reads:
            return
        reads, self._reads = self._reads, []
        self._sequence += 1
        handed_over = self._sink.publish(
            ARTICLE_READS_TOPIC, self._sequence, events_pb2.ArticleReads(reads=reads)
        )
        (READS_SENT if handed_over else READS_DROPPED).inc(len(reads))

    def _traceparent(self) -> str:
        """A ``PRODUCER`` span's ``traceparent`` when the current trace is sampled, else ""."""
        current = trace.get_current_span().get_span_context()
        if not (current.is_valid and current.trace_flags.sampled):
            return ""
        for name, value in publish_trace_headers(
            ARTICLE_READS_TOPIC, self._tracer, self._tracer_provider
        ):
            if name == "traceparent":
                return value.decode("ascii")
        return ""


class KafkaArticleEvents:
    """``ArticleChangeEvents`` on an :class:`EventSink` (the outbox bound to a session)."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

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
