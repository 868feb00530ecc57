"""The producer, batch consumer and topic helper against the session's real broker (tansu)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devstack.infra import free_port
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    EventProducer,
    TopicHandler,
    TopicSpec,
    ensure_topics,
    protobuf_decoder,
)
from kit.events import consumer as consumer_module
from kit.events.tests.support import (
    consumer_config,
    eventually,
    metric,
    producer_config,
    unique,
)
from kit.events.tracing import extract_context, inject_headers
from kit.observability.tracing import build_tracer_provider
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 15.0


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of our own (the global one can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


class Collector:
    """A batch handler that records what it was given and can be told to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[ConsumedEvent[events_pb2.ArticleRead]]] = []
        self.failures = failures
        self.attempts = 0

    async def __call__(self, batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        self.batches.append(list(batch))

    @property
    def article_ids(self) -> list[int]:
        return [e.payload.article_id for batch in self.batches for e in batch]


def read_handler(collector: Collector) -> TopicHandler[events_pb2.ArticleRead]:
    return TopicHandler(protobuf_decoder(events_pb2.ArticleRead), collector)


async def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int]:
    """The group's committed offsets by partition, read without joining the group."""
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await client.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        client.assign(tps)
        found = {tp.partition: await client.committed(tp) for tp in tps}
    finally:
        await client.stop()
    return {p: offset for p, offset in found.items() if offset is not None}


def consumer_metric_ok(topic: str, group: str) -> float:
    return metric("webook_kafka_consumed_total", topic=topic, group=group, result="ok")


def read(article_id: int) -> events_pb2.ArticleRead:
    return events_pb2.ArticleRead(article_id=article_id, user_id=7, at_ms=1)


def test_trace_context_round_trips_through_headers(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    with provider.get_tracer("t").start_as_current_span("request") as span:
        headers = inject_headers()
    assert any(name == "traceparent" for name, _ in headers)
    extracted = trace.get_current_span(extract_context(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id
    assert not trace.get_current_span(extract_context(None)).get_span_context().is_valid


async def test_ensure_topics_reports_only_what_it_created(kafka_bootstrap: str) -> None:
    topic = unique("ensure")
    assert await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)]) == {topic}
    assert await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)]) == set()


async def test_events_flow_in_batches_with_trace_links(
    kafka_bootstrap: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    topic, group = unique("flow"), unique("group")
    producer = EventProducer(producer_config(kafka_bootstrap, topic), tracer_provider=provider)
    producer.start()
    with provider.get_tracer("t").start_as_current_span("request"):
        for i in range(250):
            assert producer.publish(topic, i, read(i))
    assert await producer.flush(10)
    assert metric("webook_kafka_produced_total", topic=topic, result="ok") == 250

    collector = Collector()
    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group),
        {topic: read_handler(collector)},
        tracer_provider=provider,
    )
    consumer.start()
    try:
        assert await eventually(lambda: len(collector.article_ids) == 250, 20)
    finally:
        await consumer.stop()
        await producer.stop()
    assert sorted(collector.article_ids) == list(range(250))
    assert max(len(b) for b in collector.batches) <= 100
    # Keyed by id: each article's events stay in one partition, in order.
    assert all(e.key == str(e.payload.article_id).encode() for b in collector.batches for e in b)
    assert metric("webook_kafka_consumed_total", topic=topic, group=group, result="ok") == 250
    assert metric("webook_kafka_batch_size_count", topic=topic, group=group) == len(
        collector.batches
    )

    finished = exporter.get_finished_spans()
    producer_spans = [s for s in finished if s.kind is SpanKind.PRODUCER]
    consumer_spans = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert len(producer_spans) == 250
    assert consumer_spans
    request_trace = producer_spans[0].context.trace_id
    linked = {link.context.span_id for s in consumer_spans for link in s.links}
    assert {s.context.span_id for s in producer_spans} <= linked
    assert all(link.context.trace_id == request_trace for s in consumer_spans for link in s.links)


async def test_undecodable_records_are_skipped_counted_and_committed(kafka_bootstrap: str) -> None:
    topic, group = unique("junk"), unique("group")
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1)])
    raw = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await raw.start()
    try:
        await raw.send_and_wait(topic, read(1).SerializeToString(), key=b"1")
        await raw.send_and_wait(topic, b"\xff\xff\xff\xff", key=b"x")
        await raw.send_and_wait(topic, read(2).SerializeToString(), key=b"2")
    finally:
        await raw.stop()

    collector = Collector()
    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group), {topic: read_handler(collector)}
    )
    consumer.start()
    try:
        assert await eventually(lambda: len(collector.article_ids) == 2, 15)
    finally:
        await consumer.stop()
    assert sorted(collector.article_ids) == [1, 2]
    assert (
        metric("webook_kafka_consumed_total", topic=topic, group=group, result="undecodable") == 1
    )

    # Everything, the bad record included, was committed.
    assert await committed_offsets(kafka_bootstrap, group, topic, 1) == {0: 3}


async def test_failed_batches_are_retried_and_not_committed_until_applied(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("retry"), unique("group")
    producer = EventProducer(producer_config(kafka_bootstrap, topic))
    producer.start()
    for i in range(5):
        producer.publish(topic, i, read(i))
    assert await producer.flush(10)
    await producer.stop()

    # The handler fails until told otherwise: retried, and nothing is committed meanwhile.
    flaky = Collector(failures=10**6)
    consumer = BatchConsumer(consumer_config(kafka_bootstrap, group), {topic: read_handler(flaky)})
    consumer.start()
    try:
        assert await eventually(lambda: flaky.attempts >= 3, 15)
        assert flaky.batches == []
        assert await committed_offsets(kafka_bootstrap, group, topic, 2) == {}
        assert metric("webook_kafka_consumed_total", topic=topic, group=group, result="failed") >= 3
        flaky.failures = 0
        assert await eventually(lambda: len(flaky.article_ids) == 5, 15)
        assert await eventually(lambda: consumer_metric_ok(topic, group) == 5, 5)
    finally:
        await consumer.stop()
    assert sorted(flaky.article_ids) == list(range(5))
    assert sum((await committed_offsets(kafka_bootstrap, group, topic, 2)).values()) == 5


async def test_lag_is_reported_and_drains(kafka_bootstrap: str) -> None:
    topic, group = unique("lag"), unique("group")
    producer = EventProducer(producer_config(kafka_bootstrap, topic))
    producer.start()
    for i in range(200):
        producer.publish(topic, i, read(i))
    assert await producer.flush(10)
    await producer.stop()

    seen: list[float] = []

    async def slow(batch: Sequence[ConsumedEvent[events_pb2.ArticleRead]]) -> None:
        seen.append(metric("webook_kafka_consumer_lag", topic=topic, group=group))
        await asyncio.sleep(0.01)

    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group, max_batch=10, lag_interval_s=0.1),
        {topic: TopicHandler(protobuf_decoder(events_pb2.ArticleRead), slow)},
    )
    consumer.start()
    try:
        assert await eventually(lambda: len(seen) >= 20, 20)
        assert await eventually(
            lambda: metric("webook_kafka_consumer_lag", topic=topic, group=group) == 0, 5
        )
    finally:
        await consumer.stop()
    assert max(seen) > 0


async def test_producer_without_broker_never_blocks_and_counts_drops() -> None:
    topic = unique("nobroker")
    producer = EventProducer(
        producer_config(f"127.0.0.1:{free_port()}", topic, buffer_size=10, flush_timeout_s=0.2)
    )
    producer.start()
    started = time.monotonic()
    accepted = [producer.publish(topic, i, read(i)) for i in range(15)]
    assert time.monotonic() - started < 0.5
    assert accepted == [True] * 10 + [False] * 5
    assert producer.pending == 10
    assert metric("webook_kafka_producer_dropped_total", topic=topic) == 5
    await asyncio.sleep(0.3)
    await producer.stop()
    # What was still buffered when the flush deadline passed is dropped and counted.
    assert metric("webook_kafka_producer_dropped_total", topic=topic) == 15
    assert metric("webook_kafka_producer_buffered", topic=topic) == 0
    assert producer.publish(topic, 1, read(1)) is False


async def test_an_unrecorded_batch_span_reads_no_trace_headers(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = unique("unrecorded"), unique("group")
    provider = build_tracer_provider("test")  # no exporter: nothing is recorded
    producer = EventProducer(producer_config(kafka_bootstrap, topic))
    producer.start()
    with provider.get_tracer("t").start_as_current_span("request"):
        for i in range(5):
            producer.publish(topic, i, read(i))
    assert await producer.flush(10)
    await producer.stop()

    def no_links(all_headers: object) -> list[trace.Link]:
        raise AssertionError("links extracted for a span nobody records")

    monkeypatch.setattr(consumer_module, "producer_links", no_links)
    collector = Collector()
    consumer = BatchConsumer(
        consumer_config(kafka_bootstrap, group),
        {topic: read_handler(collector)},
        tracer_provider=provider,
    )
    consumer.start()
    try:
        assert await eventually(lambda: len(collector.article_ids) == 5, 15)
    finally:
        await consumer.stop()
        provider.shutdown()
    assert sorted(collector.article_ids) == list(range(5))
