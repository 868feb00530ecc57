"""Tracing: a server span per request for plain ASGI apps, never two for FastAPI apps."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.middleware.tests.conftest import client_for, make_app
from gateway.middleware.tracing import TracingMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_a_server_span_with_the_route_template_and_the_remote_parent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app([Middleware(TracingMiddleware, tracer_provider=provider)])
    async with client_for(app) as client:
        await client.get("/items/42", headers={"traceparent": PARENT})

    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert span.parent.span_id == 0x00F067AA0BA902B7
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/42",
        "url.scheme": "http",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_errors_mark_the_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    app = make_app(
        [Middleware(TracingMiddleware, tracer_provider=provider)], [Route("/broken", broken)]
    )
    async with client_for(app) as client:
        with pytest.raises(RuntimeError):
            await client.get("/broken")
        await client.get("/nowhere")

    broken_span, unmatched = exporter.get_finished_spans()
    assert broken_span.status.status_code is StatusCode.ERROR
    assert broken_span.events[0].name == "exception"
    assert unmatched.name == "GET"
    assert unmatched.attributes is not None
    assert unmatched.attributes["http.response.status_code"] == 404


async def test_stacked_instances_trace_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = Middleware(TracingMiddleware, tracer_provider=provider)
    app = make_app([tracing, tracing])
    async with client_for(app) as client:
        await client.get("/items/1")

    assert len(exporter.get_finished_spans()) == 1


async def test_fastapi_native_telemetry_is_not_doubled(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = FastAPI(
        telemetry={"tracer_provider": provider, "metrics": False, "logs": False},
        middleware=[Middleware(TracingMiddleware, tracer_provider=provider)],
    )

    @app.get("/articles/pub/{article_id}")
    async def read(article_id: int) -> dict[str, int]:
        return {"id": article_id}

    async with client_for(app) as client:
        await client.get("/articles/pub/7", headers={"traceparent": PARENT})

    servers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    assert servers[0].instrumentation_scope is not None
    assert servers[0].instrumentation_scope.name == "fastapi"  # FastAPI's, not ours
    assert servers[0].attributes is not None
    assert servers[0].attributes["http.route"] == "/articles/pub/{article_id}"
    assert f"{servers[0].context.trace_id:032x}" == TRACE_ID
