"""ReadBatcher: reads gathered into one ArticleReads record per window."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.message import Message
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from services.article.events import ARTICLE_READS_TOPIC, ReadBatcher
from webook.events.v1 import events_pb2


class Sink:
    """Records what it is handed; ``arrived`` is set on each hand-over. ``full``: refuses."""

    def __init__(self, *, full: bool = False) -> None:
        self.batches: list[tuple[str, int, events_pb2.ArticleReads]] = []
        self.arrived = asyncio.Event()
        self.full = full

    def publish(self, topic: str, key: int, event: Message) -> bool:
        assert isinstance(event, events_pb2.ArticleReads)
        self.batches.append((topic, key, event))
        self.arrived.set()
        return not self.full

    def reads(self, index: int) -> list[tuple[int, int, int]]:
        return [(r.article_id, r.user_id, r.at_ms) for r in self.batches[index][2].reads]


async def test_the_reads_of_a_window_travel_as_one_record_once_it_ends() -> None:
    sink = Sink()
    batcher = ReadBatcher(sink, window_s=0.05)
    batcher.article_read(1, 7, at_ms=10)
    batcher.article_read(2, 0, at_ms=11)
    assert sink.batches == []
    assert batcher.pending == 2
    await asyncio.wait_for(sink.arrived.wait(), 30)
    assert [(topic, key) for topic, key, _ in sink.batches] == [(ARTICLE_READS_TOPIC, 1)]
    assert sink.reads(0) == [(1, 7, 10), (2, 0, 11)]
    assert batcher.pending == 0
    sink.arrived.clear()
    batcher.article_read(3, 7, at_ms=12)  # a new window, the next number
    await asyncio.wait_for(sink.arrived.wait(), 30)
    assert [key for _, key, _ in sink.batches] == [1, 2]
    assert sink.reads(1) == [(3, 7, 12)]


async def test_a_full_batch_goes_at_once_and_stop_hands_over_the_rest() -> None:
    sink = Sink()
    batcher = ReadBatcher(sink, window_s=3600, max_reads=2)
    for n in range(3):
        batcher.article_read(n + 1, 7, at_ms=n)
    assert [len(event.reads) for _, _, event in sink.batches] == [2]
    batcher.stop()
    assert [len(event.reads) for _, _, event in sink.batches] == [2, 1]
    batcher.stop()  # nothing left: nothing more handed over
    assert len(sink.batches) == 2


def reads_counted(result: str) -> float:
    return REGISTRY.get_sample_value("webook_article_reads_total", {"result": result}) or 0.0


def test_the_reads_are_counted_by_what_became_of_their_batch() -> None:
    sent, dropped = reads_counted("sent"), reads_counted("dropped")
    sink = Sink()
    batcher = ReadBatcher(sink, window_s=3600, max_reads=3)
    for n in range(3):
        batcher.article_read(n + 1, 7, at_ms=n)
    sink.full = True
    batcher.article_read(4, 7, at_ms=4)
    batcher.stop()
    assert (reads_counted("sent") - sent, reads_counted("dropped") - dropped) == (3, 1)


def test_without_a_window_or_an_event_loop_each_read_goes_alone() -> None:
    sink = Sink()
    for batcher in (ReadBatcher(sink, window_s=0), ReadBatcher(sink, window_s=1.0)):
        batcher.article_read(1, 7, at_ms=1)
    assert [len(event.reads) for _, _, event in sink.batches] == [1, 1]


def test_a_sampled_read_carries_its_producer_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = Sink()
    batcher = ReadBatcher(sink, window_s=0, tracer_provider=provider)
    with provider.get_tracer("test").start_as_current_span("GetPublishedById") as request:
        batcher.article_read(1, 7, at_ms=1)
    batcher.article_read(2, 7, at_ms=2)  # outside any trace
    (producer,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert producer.name == f"{ARTICLE_READS_TOPIC} publish"
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    first, second = (event.reads[0] for _, _, event in sink.batches)
    assert first.traceparent == (
        f"00-{producer.context.trace_id:032x}-{producer.context.span_id:016x}"
        f"-{producer.context.trace_flags:02x}"
    )
    assert second.traceparent == ""


@pytest.mark.parametrize(("window_s", "max_reads"), [(-1.0, 10), (1.0, 0)])
def test_bad_settings_are_refused(window_s: float, max_reads: int) -> None:
    with pytest.raises(ValueError, match="window_s"):
        ReadBatcher(Sink(), window_s=window_s, max_reads=max_reads)
