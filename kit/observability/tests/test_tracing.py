"""The tracer provider a process builds: its resource, and OTLP export when configured.

The export test runs a real OTLP/gRPC trace collector (the protocol's generated servicer) on
a free port and checks that the spans arrive with the process's resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kit.observability.tracing import build_tracer_provider


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


def test_without_an_endpoint_spans_exist_but_go_nowhere() -> None:
    provider = build_tracer_provider("user")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer(__name__).start_as_current_span("work") as span:
        assert span.get_span_context().is_valid
    assert [s.name for s in memory.get_finished_spans()] == ["work"]
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
