"""How the producer hands events to ``aiokafka`` and which trace context they carry.

Over the fake client of ``test_producer_replay.py``: events of a round go as one record
batch per partition; the publish span is started only when it could be recorded, and the
record headers carry the context a consumer links to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kit.events.tests.support import metric, unique
from kit.events.tests.test_producer_replay import (
    PARTITIONS,
    FakeBroker,
    fake_producer,
    placed,
    publish_all,
)
from kit.events.tracing import current_trace_headers, extract_context
from kit.observability.tracing import ExportAwareTracerProvider, build_tracer_provider
from webook.events.v1 import events_pb2


@pytest.fixture
def unrecorded() -> Iterator[ExportAwareTracerProvider]:
    """A provider as services build it without an exporter: nothing is recorded."""
    provider = build_tracer_provider("test")
    yield provider
    provider.shutdown()


def _traceparent(headers: list[tuple[str, bytes]]) -> tuple[int, int, int]:
    """Trace id, span id and flags of the context in ``headers``."""
    context = trace.get_current_span(extract_context(headers)).get_span_context()
    return context.trace_id, context.span_id, context.trace_flags


def _ids(context: trace.SpanContext) -> tuple[int, int, int]:
    return context.trace_id, context.span_id, context.trace_flags


async def test_a_round_sends_one_batch_per_partition() -> None:
    broker, topic = FakeBroker(), unique("batches")
    producer = fake_producer(broker, linger_ms=50)
    producer.start()
    try:
        await publish_all(producer, topic, range(40))
    finally:
        await producer.stop()
    assert sorted(partition for _, partition, _ in broker.batches) == list(range(PARTITIONS))
    for partition in range(PARTITIONS):
        assert broker.logs[(topic, partition)] == [i for i in range(40) if placed(i) == partition]
    assert metric("webook_kafka_produced_total", topic=topic, result="ok") == 40
    assert metric("webook_kafka_producer_buffered", topic=topic) == 0


async def test_a_full_batch_is_continued_in_another() -> None:
    broker, topic = FakeBroker(batch_capacity=3), unique("batches")
    producer = fake_producer(broker)
    producer.start()
    try:
        await publish_all(producer, topic, range(20))
        broker.lose()  # offsets of each batch count from its base: a loss is still seen
        await publish_all(producer, topic, range(20, 22))
    finally:
        await producer.stop()
    assert max(records for _, _, records in broker.batches) == 3
    assert broker.records(topic) == list(range(22))
    assert metric("webook_kafka_producer_replayed_total", topic=topic) == 20


async def test_a_round_waits_for_its_linger() -> None:
    broker, topic = FakeBroker(), unique("linger")
    producer = fake_producer(broker, linger_ms=300)
    producer.start()
    try:
        producer.publish(topic, 1, events_pb2.ArticleRead(article_id=1))
        await asyncio.sleep(0.1)
        producer.publish(topic, 1, events_pb2.ArticleRead(article_id=1))
        assert broker.batches == []
        assert await producer.flush(2)
    finally:
        await producer.stop()
    assert broker.batches == [(topic, placed(1), 2)]


async def test_unrecorded_publishing_carries_the_current_context(
    unrecorded: ExportAwareTracerProvider,
) -> None:
    broker, topic = FakeBroker(), unique("unrecorded")
    producer = fake_producer(broker, tracer_provider=unrecorded)
    producer.start()
    try:
        with unrecorded.get_tracer("t").start_as_current_span("request") as request:
            assert producer.publish(topic, 1, events_pb2.ArticleRead(article_id=1))
        assert producer.publish(topic, 2, events_pb2.ArticleRead(article_id=2))
        assert await producer.flush(2)
    finally:
        await producer.stop()
    inside, outside = broker.headers
    # No span of ours: the request's own context, which a consumer links to.
    assert _traceparent(inside) == _ids(request.get_span_context())
    assert inside == current_trace_headers(request.get_span_context())
    assert outside == []


async def test_recorded_publishing_has_its_own_span(
    unrecorded: ExportAwareTracerProvider,
) -> None:
    exporter = InMemorySpanExporter()
    unrecorded.add_span_processor(SimpleSpanProcessor(exporter))  # recording from now on
    broker, topic = FakeBroker(), unique("recorded")
    producer = fake_producer(broker, tracer_provider=unrecorded)
    producer.start()
    try:
        with unrecorded.get_tracer("t").start_as_current_span("request") as request:
            assert producer.publish(topic, 1, events_pb2.ArticleRead(article_id=1))
        assert await producer.flush(2)
    finally:
        await producer.stop()
    (publish,) = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.PRODUCER]
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    (headers,) = broker.headers
    assert publish.context is not None
    assert _traceparent(headers) == _ids(publish.context)


async def test_an_unsampled_request_gets_no_publish_span() -> None:
    provider = build_tracer_provider("test", sample_ratio=0.0)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker, topic = FakeBroker(), unique("unsampled")
    producer = fake_producer(broker, tracer_provider=provider)
    producer.start()
    try:
        with provider.get_tracer("t").start_as_current_span("request") as request:
            assert not request.is_recording()
            assert producer.publish(topic, 1, events_pb2.ArticleRead(article_id=1))
        assert await producer.flush(2)
    finally:
        await producer.stop()
        provider.shutdown()
    assert exporter.get_finished_spans() == ()
    (headers,) = broker.headers
    assert _traceparent(headers) == _ids(request.get_span_context())


def test_trace_headers_of_a_context() -> None:
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
        trace_state=trace.TraceState([("vendor", "value")]),
    )
    assert current_trace_headers(context) == [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", b"vendor=value"),
    ]
    assert _traceparent(current_trace_headers(context)) == _ids(context)
    assert current_trace_headers(trace.INVALID_SPAN_CONTEXT) == []
