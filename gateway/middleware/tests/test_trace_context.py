"""The request's trace context while no span is recorded, and stepping aside when one is
(the concern run by the gateway's layer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.middleware import trace_context
from gateway.middleware.tests.conftest import client_for, layered_app
from gateway.middleware.trace_context import TraceContexts
from kit.observability.tracing import ExportAwareTracerProvider, build_tracer_provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def current_context(request: Request) -> JSONResponse:
    """What code inside the request sees: the current span and the context it propagates."""
    span = trace.get_current_span()
    carrier: dict[str, str] = {}
    inject(carrier)
    return JSONResponse(
        {
            "trace_id": f"{span.get_span_context().trace_id:032x}",
            "valid": span.get_span_context().is_valid,
            "recording": span.is_recording(),
            "traceparent": carrier.get("traceparent"),
        }
    )


def app_with(provider: ExportAwareTracerProvider) -> Starlette:
    return layered_app([Route("/ctx", current_context)], trace_contexts=TraceContexts(provider))


async def test_without_recording_the_callers_trace_continues_in_a_non_recording_span() -> None:
    provider = build_tracer_provider("gateway")
    async with client_for(app_with(provider)) as client:
        continued = (await client.get("/ctx", headers={"traceparent": PARENT})).json()
        started = (await client.get("/ctx")).json()

    assert continued["trace_id"] == TRACE_ID
    assert continued["recording"] is False
    # Outgoing calls carry the trace, from a span of this request (not the caller's).
    assert continued["traceparent"].split("-")[1] == TRACE_ID
    assert continued["traceparent"].split("-")[2] != "00f067aa0ba902b7"
    assert started["valid"] is True
    assert started["trace_id"] != TRACE_ID
    provider.shutdown()


async def test_while_spans_are_recorded_it_steps_aside() -> None:
    provider = build_tracer_provider("gateway")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with client_for(app_with(provider)) as client:
        seen = (await client.get("/ctx", headers={"traceparent": PARENT})).json()

    # Nothing of its own: FastAPI's telemetry (not in this bare app) traces the request.
    assert seen["valid"] is False
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


@pytest.fixture
def w3c_only() -> Iterator[None]:
    """The propagator configure_tracing installs (the default one adds baggage)."""
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    yield
    propagate.set_global_textmap(previous)


@pytest.mark.usefixtures("w3c_only")
async def test_direct_and_sdk_spans_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The span built without the SDK is the one the SDK path makes (ids aside)."""
    provider = build_tracer_provider("gateway")
    built: list[bool] = []
    plain = trace_context._plain_unrecorded_span

    def spy(provider: ExportAwareTracerProvider, scope: Any) -> Any:
        span = plain(provider, scope)
        built.append(span is not None)
        return span

    monkeypatch.setattr(trace_context, "_plain_unrecorded_span", spy)
    requests = [
        {"traceparent": PARENT},
        {"traceparent": PARENT.replace("-01", "-00")},
        {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},  # invalid: a new trace
        {"traceparent": PARENT.upper()},  # invalid for both: a new trace
        {"traceparent": f" {PARENT}"},  # not canonical: the propagator decides
        {},
    ]

    async def answers() -> list[dict[str, object]]:
        async with client_for(app_with(provider)) as client:
            return [(await client.get("/ctx", headers=h)).json() for h in requests]

    direct = await answers()
    assert built == [True, True, True, True, False, True]
    monkeypatch.setattr(trace_context, "_plain_unrecorded_span", lambda provider, scope: None)
    sdk = await answers()

    def same_trace(seen: dict[str, object]) -> tuple[object, ...]:
        traceparent = str(seen["traceparent"]).split("-")
        trace_id = seen["trace_id"] if seen["trace_id"] == TRACE_ID else "new"
        return trace_id, seen["recording"], seen["valid"], traceparent[0], traceparent[3]

    assert [same_trace(a) for a in direct] == [same_trace(a) for a in sdk]
    assert direct[0]["trace_id"] == TRACE_ID
    provider.shutdown()


@pytest.mark.usefixtures("w3c_only")
async def test_a_tracestate_takes_the_propagator() -> None:
    provider = build_tracer_provider("gateway")
    async with client_for(app_with(provider)) as client:
        seen = (
            await client.get("/ctx", headers={"traceparent": PARENT, "tracestate": "vendor=x"})
        ).json()

    assert seen["trace_id"] == TRACE_ID
    assert seen["recording"] is False
    provider.shutdown()
