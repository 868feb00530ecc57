"""Traces of the Kafka sync path: publish → consumer batch (linked) → apply → index commit.

Fresh topics (renamed through ``sync_consumer(topics=...)``) on the session's broker, the
production decoders and handler, and a tracer provider of the test's own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kit.events import ConsumerConfig, EventProducer, ProducerConfig, TopicSpec
from services.search.events import (
    ARTICLE_PUBLISHED_TOPIC,
    ARTICLE_WITHDRAWN_TOPIC,
    USER_CHANGED_TOPIC,
    sync_consumer,
)
from services.search.index import TantivySearchIndex
from services.search.service import BatchedIndexWriter, SearchService
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of our own (the global one can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def service(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[SearchService]:
    """A traced search service on a fresh index."""
    provider, _ = spans
    index = TantivySearchIndex(tmp_path / "index")
    writer = BatchedIndexWriter(index, commit_interval_s=0.05, tracer_provider=provider)
    writer.start()
    yield SearchService(index, writer, tracer_provider=provider)
    await writer.stop()
    await index.close()


async def test_a_consumed_batch_links_to_the_publisher_and_parents_the_apply(
    kafka_bootstrap: str,
    service: SearchService,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    suffix = uuid.uuid4().hex[:8]
    topics = {
        ARTICLE_PUBLISHED_TOPIC: f"published-{suffix}",
        ARTICLE_WITHDRAWN_TOPIC: f"withdrawn-{suffix}",
        USER_CHANGED_TOPIC: f"users-{suffix}",
    }
    producer = EventProducer(
        ProducerConfig(
            bootstrap=kafka_bootstrap,
            topics=tuple(TopicSpec(name, 2) for name in topics.values()),
            request_timeout_ms=3000,
        ),
        tracer_provider=provider,
    )
    producer.start()
    now = int(time.time() * 1000)
    with provider.get_tracer("test").start_as_current_span("publish request") as request:
        for article_id in (1, 2):
            assert producer.publish(
                topics[ARTICLE_PUBLISHED_TOPIC],
                article_id,
                events_pb2.ArticlePublished(
                    article_id=article_id, title=f"链路追踪 {article_id}", utime_ms=now
                ),
            )
    assert await producer.flush(10)
    consumer = sync_consumer(
        service,
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"search-trace-{suffix}",
            max_wait_s=0.2,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            topic_partitions=2,
            stop_timeout_s=2.0,
        ),
        topics=topics,
        tracer_provider=provider,
    )
    consumer.start()
    try:
        for _ in range(200):
            if (await service.search("链路追踪", 0, 0, 10)).total == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
        await producer.stop()
    assert (await service.search("链路追踪", 0, 0, 10)).total == 2

    finished = exporter.get_finished_spans()
    published = {
        s.context.span_id
        for s in finished
        if s.kind is SpanKind.PRODUCER and s.context.trace_id == request.get_span_context().trace_id
    }
    assert len(published) == 2
    batches = [
        s
        for s in finished
        if s.kind is SpanKind.CONSUMER and s.name == f"{topics[ARTICLE_PUBLISHED_TOPIC]} process"
    ]
    assert batches
    assert {link.context.span_id for s in batches for link in s.links} >= published
    applies = [s for s in finished if s.name == "search.sync.apply"]
    assert applies
    batch_ids = {s.context.span_id for s in batches}
    assert all(s.parent is not None and s.parent.span_id in batch_ids for s in applies)
    applied = [s.attributes.get("search.applied") if s.attributes else None for s in applies]
    assert sum(n for n in applied if isinstance(n, int)) == 2
    assert any(s.name == "search.index.commit" for s in finished)
