"""One trace from an HTTP request through two services to the Kafka consumer, with logs.

The gateway app, the article and interactive services (their real composition roots, on
real gRPC ports) and the interactive read-event consumer run in this test's process, on the
session's Redis and broker and SQLite files, with every span recorded in memory:

``GET /articles/pub/{id}`` → gateway SERVER span → CLIENT span → article SERVER span
(``GetPublishedById``) → CLIENT span → interactive SERVER span (``Get``: the article's
popularity); the article service publishes a read event inside its span (PRODUCER), and the
consumer's batch span (CONSUMER, another trace: many requests feed one batch) links to it.
The gateway's log lines for the request carry the request's trace id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.auth.tokens import TokenService
from gateway.middleware.edge_settings import EdgeSettings
from gateway.settings import GatewaySettings
from kit.config import Mode
from kit.logging import JsonFormatter
from kit.migrations import upgrade_async
from kit.observability.tracing import install_span_processor
from services.article.__main__ import build_runner as build_article
from services.article.settings import ArticleSettings
from services.interactive.__main__ import build_runner as build_interactive
from services.interactive.settings import InteractiveSettings
from webook.article.v1 import article_pb2, article_pb2_grpc

pytestmark = pytest.mark.integration

USER_AGENT = "webook-tracing-test/1.0"
READER_ID = 7
ARTICLE_SERVER_SPAN = "webook.article.v1.ArticleService/GetPublishedById"
INTERACTIVE_SERVER_SPAN = "webook.interactive.v1.InteractiveService/Get"
READ_TOPIC = "webook.article.reads"
# Bound on the wait for the consumer: a group join takes about half the session timeout.
CONSUMER_WAIT_S = 30


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Every span of the process, recorded in memory, through the global tracer provider."""
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    install_span_processor(processor, service="tracing-test")
    yield memory
    processor.shutdown()


class JsonLines(logging.Handler):
    """Keeps every record as the JSON line the processes would write."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
async def services(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[int, int]]:
    """The interactive and article services on free ports; ``(article, interactive)``."""
    databases = {name: f"sqlite+aiosqlite:///{tmp_path / name}.db" for name in ("a", "i")}
    await upgrade_async("article", databases["a"])
    await upgrade_async("interactive", databases["i"])
    common: dict[str, Any] = {
        "mode": Mode.TEST,
        "grpc_port": 0,
        "metrics_port": -1,
        "etcd_endpoints": [],
        "redis_url": redis_url,
        "kafka_bootstrap": kafka_bootstrap,
        "deregister_drain_delay": 0,
        "shutdown_grace": 1,
    }
    interactive = build_interactive(
        InteractiveSettings(
            **common,
            database_url=databases["i"],
            read_consumer_group=f"tracing-{uuid.uuid4().hex[:8]}",
            read_batch_wait_seconds=0.2,
            kafka_session_timeout_ms=3000,
            kafka_heartbeat_interval_ms=500,
        )
    )
    interactive_port = await interactive.start()
    article = build_article(
        ArticleSettings(
            **common,
            database_url=databases["a"],
            # No user or follow service: names and followers degrade, so nothing is cached
            # and every read asks the interactive service for the article's popularity.
            peers={"interactive": f"127.0.0.1:{interactive_port}"},
        )
    )
    article_port = await article.start()
    try:
        yield article_port, interactive_port
    finally:
        await article.stop()
        await interactive.stop()


def _span(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert len(found) == 1, (name, [(s.name, s.kind) for s in spans])
    return found[0]


def _ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    by_id = {s.context.span_id: s for s in spans}
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        ancestor = by_id[parent.span_id]
        names.append(ancestor.name)
        parent = ancestor.parent
    return names


async def _consumer_span_linking(
    exporter: InMemorySpanExporter, producer: ReadableSpan
) -> ReadableSpan:
    deadline = asyncio.get_running_loop().time() + CONSUMER_WAIT_S
    while True:
        for span in exporter.get_finished_spans():
            if span.kind is SpanKind.CONSUMER and any(
                link.context.span_id == producer.context.span_id for link in span.links
            ):
                return span
        assert asyncio.get_running_loop().time() < deadline, "no consumer span links the read"
        await asyncio.sleep(0.1)


async def test_one_trace_from_the_gateway_to_the_consumer(
    exporter: InMemorySpanExporter,
    services: tuple[int, int],
    log_lines: JsonLines,
    redis_url: str,
) -> None:
    article_port, interactive_port = services
    async with grpc.aio.insecure_channel(f"127.0.0.1:{article_port}") as channel:
        published = await article_pb2_grpc.ArticleServiceStub(channel).Publish(
            article_pb2.PublishRequest(author_id=1, title="traced", content="<p>spans</p>")
        )
    settings = GatewaySettings(
        mode=Mode.TEST,
        redis_url=redis_url,
        peers={
            "article": f"127.0.0.1:{article_port}",
            "interactive": f"127.0.0.1:{interactive_port}",
        },
        edge=EdgeSettings(rate_limits=()),
    )
    tokens = TokenService(
        access_key=settings.jwt_access_key.get_secret_value(),
        refresh_key=settings.jwt_refresh_key.get_secret_value(),
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )
    access = tokens.issue(READER_ID, USER_AGENT).access
    app = create_app(settings)
    exporter.clear()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        ) as client,
    ):
        answer = await client.get(
            f"/articles/pub/{published.id}",
            headers={"User-Agent": USER_AGENT, "Authorization": f"Bearer {access}"},
        )
    assert answer.json()["code"] == 0, answer.text

    spans = exporter.get_finished_spans()
    request = _span(spans, "GET /articles/pub/{id}", SpanKind.SERVER)
    trace_id = request.context.trace_id
    article = _span(spans, ARTICLE_SERVER_SPAN, SpanKind.SERVER)
    producer = _span(spans, f"{READ_TOPIC} publish", SpanKind.PRODUCER)
    # The interactive service answers twice: the gateway's counts, the article's popularity.
    counts, popularity = sorted(
        (s for s in spans if s.name == INTERACTIVE_SERVER_SPAN and s.kind is SpanKind.SERVER),
        key=lambda s: ARTICLE_SERVER_SPAN in _ancestors(s, spans),
    )
    for span in (article, counts, popularity, producer):
        assert span.context.trace_id == trace_id, span.name
    # Parents cross the process boundaries through the CLIENT spans' metadata.
    assert _ancestors(article, spans) == [ARTICLE_SERVER_SPAN, request.name]
    assert _ancestors(counts, spans) == [INTERACTIVE_SERVER_SPAN, request.name]
    assert ARTICLE_SERVER_SPAN in _ancestors(popularity, spans)
    assert _ancestors(popularity, spans)[-1] == request.name
    assert ARTICLE_SERVER_SPAN in _ancestors(producer, spans)
    # The services' resources name them (one provider here; one per process in production).
    assert request.resource.attributes["service.name"] == "webook-tracing-test"

    consumer = await _consumer_span_linking(exporter, producer)
    assert consumer.name == f"{READ_TOPIC} process"
    (link,) = (lnk for lnk in consumer.links if lnk.context.span_id == producer.context.span_id)
    assert link.context.trace_id == trace_id
    assert consumer.attributes is not None
    batch_size = consumer.attributes["messaging.batch.message_count"]
    assert isinstance(batch_size, int)
    assert batch_size >= 1

    traced = [line for line in log_lines.lines if line.get("trace_id") == f"{trace_id:032x}"]
    access_log = [line for line in traced if line.get("path") == f"/articles/pub/{published.id}"]
    assert access_log, log_lines.lines
    assert access_log[0]["span_id"] == f"{request.context.span_id:016x}"


def test_spans_are_exported_through_the_global_provider(exporter: InMemorySpanExporter) -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    with trace.get_tracer(__name__).start_as_current_span("probe") as span:
        trace_id = span.get_span_context().trace_id
    assert any(s.context.trace_id == trace_id for s in exporter.get_finished_spans())
