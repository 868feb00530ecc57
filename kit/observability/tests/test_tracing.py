"""The tracer provider a process builds: its resource, sampling, and OTLP export.

Spans are recorded only once a span processor consumes them; before that they are
non-recording spans that still carry trace ids (for logs and propagation). The export test
runs a real OTLP/gRPC trace collector (the protocol's generated servicer) on a free port and
checks that the spans arrive with the process's resource.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from concurrent import futures

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kit.logging import JsonFormatter
from kit.observability.tracing import ExportGatedSampler, build_tracer_provider, records_spans

PROPAGATOR = TraceContextTextMapPropagator()
# A caller's context whose trace was sampled (flags 01), and one whose trace was not (00).
SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every export request it receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(  # the protocol's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    # opentelemetry-proto ships its generated gRPC module without type hints.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None).wait()


def test_the_resource_names_the_service_and_the_instance() -> None:
    first, second = build_tracer_provider("article"), build_tracer_provider("article")
    attributes = first.resource.attributes
    assert attributes["service.name"] == "webook-article"
    assert attributes["service.namespace"] == "webook"
    assert attributes["service.instance.id"] != second.resource.attributes["service.instance.id"]
    first.shutdown()
    second.shutdown()


def test_without_an_endpoint_spans_carry_ids_but_are_not_recorded() -> None:
    provider = build_tracer_provider("user")
    tracer = provider.get_tracer(__name__)
    parent = PROPAGATOR.extract({"traceparent": SAMPLED_PARENT})
    with tracer.start_as_current_span("work", context=parent) as span:
        assert not span.is_recording()
        context = span.get_span_context()
        # The caller's trace continues (logs and downstream calls carry its id) ...
        assert f"{context.trace_id:032x}" == SAMPLED_PARENT.split("-")[1]
        assert f"{context.span_id:016x}" != SAMPLED_PARENT.split("-")[2]
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)
        # ... marked as not sampled here, since this process records nothing.
        assert carrier["traceparent"].split("-")[1] == SAMPLED_PARENT.split("-")[1]
        assert carrier["traceparent"].endswith("-00")
    with tracer.start_as_current_span("root") as root:
        assert root.get_span_context().is_valid
        assert not root.is_recording()
    provider.shutdown()


def test_log_lines_carry_the_trace_id_of_a_non_recording_span() -> None:
    provider = build_tracer_provider("user")
    formatter = JsonFormatter("user")
    with provider.get_tracer(__name__).start_as_current_span("work") as span:
        record = logging.LogRecord("test", logging.INFO, __file__, 1, "hello", None, None)
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()


def test_adding_a_span_processor_turns_recording_on_for_existing_tracers() -> None:
    provider = build_tracer_provider("user")
    # Servers get their tracers when they are built, which may be before a test's exporter.
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("before"):
        pass
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert provider.gate.recording
    with tracer.start_as_current_span("work") as span:
        assert span.is_recording()
    assert [s.name for s in memory.get_finished_spans()] == ["work"]
    provider.shutdown()


def test_when_exported_sampling_follows_the_parent_and_the_ratio_for_roots() -> None:
    provider = build_tracer_provider("user", sample_ratio=0.0)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("root, ratio 0") as root:
        assert not root.is_recording()
    sampled = PROPAGATOR.extract({"traceparent": SAMPLED_PARENT})
    with tracer.start_as_current_span("child of sampled", context=sampled) as child:
        assert child.is_recording()
    unsampled = PROPAGATOR.extract({"traceparent": UNSAMPLED_PARENT})
    with tracer.start_as_current_span("child of unsampled", context=unsampled) as other:
        assert not other.is_recording()
    assert [s.name for s in memory.get_finished_spans()] == ["child of sampled"]
    provider.shutdown()


def test_every_root_is_sampled_at_ratio_one() -> None:
    provider = build_tracer_provider("user")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(__name__)
    for n in range(20):
        with tracer.start_as_current_span(f"root {n}"):
            pass
    assert len(memory.get_finished_spans()) == 20
    provider.shutdown()


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="ratio"):
        ExportGatedSampler(ratio)


def test_the_global_api_sees_non_recording_spans_as_valid_contexts() -> None:
    provider = build_tracer_provider("user")
    with provider.get_tracer(__name__).start_as_current_span("work"):
        assert trace.get_current_span().get_span_context().is_valid
    provider.shutdown()


async def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    collector: tuple[Collector, int],
) -> None:
    servicer, port = collector
    provider = build_tracer_provider("comment", f"http://127.0.0.1:{port}")
    with provider.get_tracer(__name__).start_as_current_span("exported") as span:
        trace_id = span.get_span_context().trace_id
    # The batch processor exports on flush; do it off the event loop (it blocks).
    assert await asyncio.to_thread(provider.force_flush, 10_000)
    await asyncio.to_thread(provider.shutdown)

    spans = [
        (resource.resource, s)
        for request in servicer.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for s in scope.spans
    ]
    ((resource, exported),) = spans
    assert exported.name == "exported"
    assert exported.trace_id == trace_id.to_bytes(16, "big")
    names = {a.key: a.value.string_value for a in resource.attributes}
    assert names["service.name"] == "webook-comment"


def test_records_spans_tells_whether_anything_consumes_them() -> None:
    provider = build_tracer_provider("user")
    assert not records_spans(provider)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert records_spans(provider)
    # Providers built elsewhere decide by their own sampler: assume they record.
    assert records_spans(TracerProvider(shutdown_on_exit=False))
    provider.shutdown()
