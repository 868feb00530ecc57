"""Tracing by both composers: one trace across client and server spans, W3C context in metadata."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kit.governance import (
    BreakerConfig,
    GovernanceConfig,
    GovernedServerInterceptor,
    SheddingConfig,
    UnaryClientPolicy,
)
from kit.governance.tests.support import (
    MISSING_USER_ID,
    USER_SERVICE,
    OpenGoverned,
    ScriptedUserService,
    Spans,
    StartServer,
)
from webook.user.v1 import user_pb2

TRACING_ONLY = GovernanceConfig(
    metrics=False, breaker=BreakerConfig(enabled=False), shedding=SheddingConfig(enabled=False)
)


async def finished_spans(exporter: InMemorySpanExporter, count: int) -> tuple[ReadableSpan, ...]:
    """The exporter's spans once ``count`` have ended (bounded wait).

    A server span ends when its handler returns, which can be just after the client already
    has the answer (always so for an aborted call), so reading the exporter at once races.
    """
    for _ in range(500):  # up to ~5 s
        if len(exporter.get_finished_spans()) >= count:
            break
        await asyncio.sleep(0.01)
    return exporter.get_finished_spans()


def by_kind(finished: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in finished if span.kind is kind]


async def test_client_and_server_spans_form_one_trace_across_two_hops(
    start_server: StartServer,
    open_governed: OpenGoverned,
    spans: Spans,
) -> None:

    def governed_server() -> GovernedServerInterceptor:
        return GovernedServerInterceptor(TRACING_ONLY, tracer_provider=spans.provider)

    def policy() -> UnaryClientPolicy:
        return UnaryClientPolicy("user", TRACING_ONLY, tracer_provider=spans.provider)

    downstream = ScriptedUserService()
    downstream_stub = await open_governed(
        await start_server(downstream, [governed_server()]), policy()
    )
    upstream = ScriptedUserService()

    async def call_downstream() -> None:
        await downstream_stub.Profile(user_pb2.ProfileRequest(id=2))

    upstream.downstream = call_downstream
    stub = await open_governed(await start_server(upstream, [governed_server()]), policy())

    await stub.Profile(user_pb2.ProfileRequest(id=1))

    finished = await finished_spans(spans.exporter, 4)
    first_client, second_client = sorted(
        by_kind(finished, SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    first_server, second_server = sorted(
        by_kind(finished, SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    chain = [first_client, first_server, second_client, second_server]
    contexts = [span.get_span_context() for span in chain]
    assert len({context.trace_id for context in contexts if context}) == 1
    for parent, child in itertools.pairwise(chain):
        parent_context = parent.get_span_context()
        assert child.parent is not None
        assert parent_context is not None
        assert child.parent.span_id == parent_context.span_id
    assert first_client.parent is None
    assert "traceparent" in upstream.invocation_metadata[0]
    for span in chain:
        assert span.name == f"{USER_SERVICE}/Profile"
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == USER_SERVICE
        assert span.attributes["rpc.method"] == "Profile"
        assert span.attributes["rpc.grpc.status_code"] == 0
        assert span.status.status_code is StatusCode.UNSET


async def test_non_ok_status_marks_both_spans_as_errors(
    start_server: StartServer,
    open_governed: OpenGoverned,
    spans: Spans,
) -> None:
    governor = GovernedServerInterceptor(TRACING_ONLY, tracer_provider=spans.provider)
    stub = await open_governed(
        await start_server(ScriptedUserService(), [governor]),
        UnaryClientPolicy("user", TRACING_ONLY, tracer_provider=spans.provider),
    )

    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Profile(user_pb2.ProfileRequest(id=MISSING_USER_ID))

    finished = await finished_spans(spans.exporter, 2)
    assert {span.kind for span in finished} == {SpanKind.CLIENT, SpanKind.SERVER}
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
