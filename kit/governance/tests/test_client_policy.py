"""UnaryClientPolicy around a real balanced channel: one span, one sample, one breaker verdict
per logical call, whatever the failover did; deadlines bounded; fallbacks when rejected."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from kit.balancer import BalancedChannel, BalancerConfig, static_balanced_channel
from kit.governance import (
    BreakerConfig,
    BreakerOpenError,
    DeadlineConfig,
    DeadlineExceededError,
    GovernanceConfig,
    GovernanceMetrics,
    UnaryClientPolicy,
    deadline_after,
    reset_deadline,
    set_deadline,
)
from kit.governance.tests.support import PROFILE, ScriptedUserService, StartServer
from webook.user.v1 import user_pb2, user_pb2_grpc

TARGET = "policy-user"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of our own, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def metrics() -> GovernanceMetrics:
    """Metrics in a registry of this test's own."""
    return GovernanceMetrics(CollectorRegistry())


@pytest.fixture
async def channels() -> AsyncIterator[list[BalancedChannel]]:
    """Balanced channels closed after the test."""
    opened: list[BalancedChannel] = []
    yield opened
    for channel in opened:
        await channel.close()


def client_sample(metrics: GovernanceMetrics, name: str, code: str) -> float:
    """``webook_grpc_client_handled_total`` for UserService/``name`` with ``code``."""
    child = metrics.client_handled.labels("webook.user.v1.UserService", name, code)
    return float(child._value.get())


async def balanced_stub(
    addresses: list[str],
    policy: UnaryClientPolicy,
    channels: list[BalancedChannel],
) -> user_pb2_grpc.UserServiceAsyncStub:
    channel = await static_balanced_channel(
        TARGET,
        addresses,
        BalancerConfig(is_idempotent=lambda method: method == PROFILE),
        interceptors=policy.stream_interceptors(),
        policy=policy,
    )
    channels.append(channel)
    return user_pb2_grpc.UserServiceStub(channel)


async def test_a_failed_over_call_is_one_span_one_sample_and_an_accepted_call(
    start_server: StartServer,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    metrics: GovernanceMetrics,
    channels: list[BalancedChannel],
) -> None:
    provider, exporter = spans
    broken, healthy = ScriptedUserService(), ScriptedUserService()
    broken.failure = grpc.StatusCode.UNAVAILABLE
    policy = UnaryClientPolicy(
        TARGET,
        GovernanceConfig(breaker=BreakerConfig(min_requests=1)),
        metrics=metrics,
        tracer_provider=provider,
    )
    stub = await balanced_stub(
        [await start_server(broken), await start_server(healthy)], policy, channels
    )

    for _ in range(4):
        response = await stub.Profile(user_pb2.ProfileRequest(id=7))
        assert response.user.nickname == "real"

    # Every call reached the healthy server; some tried the broken one first.
    assert healthy.calls == 4
    assert broken.calls >= 1
    client_spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(client_spans) == 4
    assert all(s.status.status_code is not StatusCode.ERROR for s in client_spans)
    assert client_sample(metrics, "Profile", "OK") == 4
    assert client_sample(metrics, "Profile", "UNAVAILABLE") == 0
    # The breaker saw four accepted calls, so it stays closed with min_requests=1.
    assert metrics.breaker_state.labels(TARGET)._value.get() == 0.0

    # Each attempt carried the span's trace context to the server.
    trace_ids = {format(s.context.trace_id, "032x") for s in client_spans}
    seen = {str(m["traceparent"]).split("-")[1] for m in healthy.invocation_metadata}
    assert seen == trace_ids


async def test_a_failure_is_recorded_with_its_code_on_span_and_metrics(
    start_server: StartServer,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    metrics: GovernanceMetrics,
    channels: list[BalancedChannel],
) -> None:
    provider, exporter = spans
    servicer = ScriptedUserService()
    servicer.failure = grpc.StatusCode.PERMISSION_DENIED
    policy = UnaryClientPolicy(TARGET, metrics=metrics, tracer_provider=provider)
    stub = await balanced_stub([await start_server(servicer)], policy, channels)

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Login(user_pb2.LoginRequest(email="a@b.c"))

    assert failed.value.code() is grpc.StatusCode.PERMISSION_DENIED
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert client_sample(metrics, "Login", "PERMISSION_DENIED") == 1


async def test_timeouts_are_bounded_by_config_and_the_request_deadline(
    start_server: StartServer,
    metrics: GovernanceMetrics,
    channels: list[BalancedChannel],
) -> None:
    servicer = ScriptedUserService()
    policy = UnaryClientPolicy(
        TARGET,
        GovernanceConfig(deadline=DeadlineConfig(default_timeout=0.8)),
        metrics=metrics,
    )
    stub = await balanced_stub([await start_server(servicer)], policy, channels)

    await stub.Profile(user_pb2.ProfileRequest(id=1))  # no timeout given: the configured one
    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=30)  # capped by the config
    with deadline_after(0.3):
        await stub.Profile(user_pb2.ProfileRequest(id=1))  # the request's deadline is nearer
    # grpc rounds deadlines on the wire: allow 10 ms above the bound.
    first, second, third = (t if t is not None else float("inf") for t in servicer.time_remaining)
    assert 0.5 < first <= 0.81
    assert 0.5 < second <= 0.81
    assert third <= 0.31

    spent = set_deadline(time.monotonic() - 1.0)
    try:
        with pytest.raises(DeadlineExceededError):
            await stub.Profile(user_pb2.ProfileRequest(id=1))
    finally:
        reset_deadline(spent)
    assert servicer.calls == 3  # the spent budget never reached the network
    assert client_sample(metrics, "Profile", "DEADLINE_EXCEEDED") == 1


async def test_an_open_breaker_answers_with_the_fallback_or_rejects_locally(
    start_server: StartServer,
    metrics: GovernanceMetrics,
    channels: list[BalancedChannel],
) -> None:
    servicer = ScriptedUserService()
    servicer.failure = grpc.StatusCode.UNAVAILABLE

    async def degraded(request: user_pb2.ProfileRequest) -> user_pb2.ProfileResponse:
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id, nickname="fallback"))

    policy = UnaryClientPolicy(
        TARGET,
        GovernanceConfig(breaker=BreakerConfig(min_requests=3, k=1.0)),
        fallbacks={PROFILE: degraded},
        metrics=metrics,
    )
    stub = await balanced_stub([await start_server(servicer)], policy, channels)
    login = user_pb2.LoginRequest(email="a@b.c")
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Login(login)
        assert not isinstance(failed.value, BreakerOpenError)

    # Rejection probability is now (3 - 0) / 4: draw until a call is rejected locally.
    rejections: list[grpc.StatusCode] = []
    answers: list[str] = []
    for _ in range(40):
        try:
            response = await stub.Profile(user_pb2.ProfileRequest(id=9))
            answers.append(response.user.nickname)
        except grpc.aio.AioRpcError as error:
            rejections.append(error.code())
    assert set(rejections) <= {grpc.StatusCode.UNAVAILABLE}
    assert "fallback" in answers
    assert metrics.breaker_state.labels(TARGET)._value.get() == 1.0
    # A fallback answer is what the caller saw: OK.
    assert client_sample(metrics, "Profile", "OK") == answers.count("fallback")
    assert len(rejections) == 40 - len(answers)
