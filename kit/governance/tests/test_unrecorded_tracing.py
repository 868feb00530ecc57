"""Trace context over gRPC while nothing records spans (the shortcut of kit.observability).

A real server with :class:`GovernedServerInterceptor` and a client with
:class:`UnaryClientPolicy`, both on an :class:`ExportAwareTracerProvider` without a
span processor: the handler runs in a span continuing the caller's trace, with the caller's
trace state, whatever form the ``traceparent`` takes; a missing or invalid one starts a new
trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kit.governance import (
    BreakerConfig,
    GovernanceConfig,
    GovernedServerInterceptor,
    SheddingConfig,
    UnaryClientPolicy,
)
from kit.governance.tests.support import (
    OpenChannel,
    OpenGoverned,
    ScriptedUserService,
    StartServer,
)
from kit.observability.tracing import ExportAwareTracerProvider, build_tracer_provider
from webook.user.v1 import user_pb2, user_pb2_grpc

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TraceRecordingUserService(ScriptedUserService):
    """Keeps the span context current in each ``Profile`` handler."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[SpanContext] = []

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ProfileResponse:
        self.contexts.append(trace.get_current_span().get_span_context())
        return await super().Profile(request, context)


@pytest.fixture
def provider() -> Iterator[ExportAwareTracerProvider]:
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    yield build_tracer_provider("test")
    propagate.set_global_textmap(previous)


def client_policy(provider: ExportAwareTracerProvider) -> UnaryClientPolicy:
    """Tracing on the client side (and metrics; no breaker)."""
    return UnaryClientPolicy(
        "user", GovernanceConfig(breaker=BreakerConfig(enabled=False)), tracer_provider=provider
    )


@pytest.fixture
async def served(
    start_server: StartServer, provider: ExportAwareTracerProvider
) -> tuple[TraceRecordingUserService, str]:
    service = TraceRecordingUserService()
    governor = GovernedServerInterceptor(
        GovernanceConfig(shedding=SheddingConfig(enabled=False)), tracer_provider=provider
    )
    assert governor.tracing is not None
    assert governor.tracing.unrecorded.provider() is provider
    return service, await start_server(service, [governor])


async def test_the_handler_continues_the_client_span_of_the_caller(
    served: tuple[TraceRecordingUserService, str],
    open_governed: OpenGoverned,
    provider: ExportAwareTracerProvider,
) -> None:
    service, address = served
    stub = await open_governed(address, client_policy(provider))
    request_span = provider.get_tracer("test").start_span("request")
    with trace.use_span(request_span, end_on_exit=True):
        await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
        await stub.Profile(user_pb2.ProfileRequest(id=2), timeout=5)

    caller = request_span.get_span_context()
    sent = [metadata["traceparent"] for metadata in service.invocation_metadata]
    assert all(isinstance(header, str) and header.startswith("00-") for header in sent)
    client_span_ids = {int(str(header).split("-")[2], 16) for header in sent}
    assert len(client_span_ids) == 2  # one CLIENT span per call
    assert caller.span_id not in client_span_ids
    assert all(str(header).endswith(f"-{caller.trace_flags:02x}") for header in sent)
    for context in service.contexts:
        assert context.is_valid
        assert context.trace_id == caller.trace_id
        assert context.span_id not in client_span_ids | {caller.span_id}
        assert not context.is_remote
    assert not any(
        "tracestate" in metadata for metadata in service.invocation_metadata
    )  # the caller had none


@pytest.mark.parametrize(
    ("metadata", "continued", "state"),
    [
        ((("traceparent", PARENT),), True, ""),
        ((("traceparent", PARENT), ("tracestate", "vendor=v1,other=x")), True, "vendor=v1,other=x"),
        # A future version (more fields) is read by the propagator.
        ((("traceparent", "01" + PARENT[2:] + "-future"),), True, ""),
        ((("traceparent", " " + PARENT),), True, ""),
        # Invalid: a new trace.
        ((("traceparent", PARENT.upper()),), False, ""),
        ((("traceparent", PARENT.replace("00f067aa0ba902b7", "0" * 16)),), False, ""),
        ((("traceparent", "00" + PARENT[2:] + "-extra"),), False, ""),
        ((), False, ""),
    ],
)
async def test_the_callers_context_is_read_in_every_form_the_propagator_reads(
    served: tuple[TraceRecordingUserService, str],
    open_channel: OpenChannel,
    metadata: tuple[tuple[str, str], ...],
    continued: bool,
    state: str,
) -> None:
    service, address = served
    stub = user_pb2_grpc.UserServiceStub(open_channel(address))
    await stub.Profile(user_pb2.ProfileRequest(id=1), metadata=metadata, timeout=5)
    (context,) = service.contexts
    assert context.is_valid
    assert (context.trace_id == TRACE_ID) is continued
    assert context.trace_state.to_header() == state
    assert not context.trace_flags.sampled  # nothing records


async def test_the_client_sends_the_trace_state_of_the_callers_span(
    served: tuple[TraceRecordingUserService, str],
    open_governed: OpenGoverned,
    provider: ExportAwareTracerProvider,
) -> None:
    service, address = served
    stub = await open_governed(address, client_policy(provider))
    incoming = propagate.extract(
        {"traceparent": PARENT, "tracestate": "vendor=v1"}, context=Context()
    )
    with trace.use_span(provider.get_tracer("test").start_span("request", context=incoming)):
        await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
    (metadata,) = service.invocation_metadata
    assert metadata["tracestate"] == "vendor=v1"
    assert str(metadata["traceparent"]).startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    (context,) = service.contexts
    assert context.trace_id == TRACE_ID
    assert context.trace_state.to_header() == "vendor=v1"
