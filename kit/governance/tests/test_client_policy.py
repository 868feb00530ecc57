"""The client composer around a real balanced channel: one span, one sample, one breaker
verdict per logical call, whatever the failover did; the order tracing → metrics → deadline →
breaker; fallbacks when the breaker rejects. Deadlines: ``test_deadline.py``."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from kit.governance import (
    BreakerConfig,
    BreakerOpenError,
    CircuitBreaker,
    DeadlineExceededError,
    GovernanceConfig,
    GovernanceMetrics,
    UnaryClientPolicy,
    deadline_after,
)
from kit.governance.tests.support import (
    PROFILE,
    ManualClock,
    OpenGoverned,
    ScriptedUserService,
    Spans,
    StartServer,
)
from webook.user.v1 import user_pb2

TARGET = "policy-user"


@pytest.fixture
def metrics() -> GovernanceMetrics:
    """Metrics in a registry of this test's own."""
    return GovernanceMetrics(CollectorRegistry())


def client_sample(metrics: GovernanceMetrics, name: str, code: str) -> float:
    """``webook_grpc_client_handled_total`` for UserService/``name`` with ``code``."""
    child = metrics.client_handled.labels("webook.user.v1.UserService", name, code)
    return float(child._value.get())


async def test_a_failed_over_call_is_one_span_one_sample_and_an_accepted_call(
    start_server: StartServer,
    open_governed: OpenGoverned,
    spans: Spans,
    metrics: GovernanceMetrics,
) -> None:
    broken, healthy = ScriptedUserService(), ScriptedUserService()
    broken.failure = grpc.StatusCode.UNAVAILABLE
    policy = UnaryClientPolicy(
        TARGET,
        GovernanceConfig(breaker=BreakerConfig(min_requests=1)),
        metrics=metrics,
        tracer_provider=spans.provider,
    )
    stub = await open_governed([await start_server(broken), await start_server(healthy)], policy)

    for _ in range(4):
        response = await stub.Profile(user_pb2.ProfileRequest(id=7))
        assert response.user.nickname == "real"

    # Every call reached the healthy server; some tried the broken one first.
    assert healthy.calls == 4
    assert broken.calls >= 1
    client_spans = [s for s in spans.exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
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
    open_governed: OpenGoverned,
    spans: Spans,
    metrics: GovernanceMetrics,
) -> None:
    servicer = ScriptedUserService()
    servicer.failure = grpc.StatusCode.PERMISSION_DENIED
    policy = UnaryClientPolicy(TARGET, metrics=metrics, tracer_provider=spans.provider)
    stub = await open_governed(await start_server(servicer), policy)

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Login(user_pb2.LoginRequest(email="a@b.c"))

    assert failed.value.code() is grpc.StatusCode.PERMISSION_DENIED
    (span,) = spans.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert client_sample(metrics, "Login", "PERMISSION_DENIED") == 1


async def test_tracing_and_metrics_see_what_the_deadline_and_the_breaker_decide(
    start_server: StartServer,
    open_governed: OpenGoverned,
    spans: Spans,
    metrics: GovernanceMetrics,
) -> None:
    servicer = ScriptedUserService()
    servicer.failure = grpc.StatusCode.UNAVAILABLE
    breaker = CircuitBreaker(
        TARGET,
        BreakerConfig(min_requests=1, k=1.0),
        metrics=metrics,
        clock=ManualClock(),
        random_source=lambda: 0.0,  # any positive probability rejects
    )
    policy = UnaryClientPolicy(
        TARGET, metrics=metrics, tracer_provider=spans.provider, breaker=breaker
    )
    stub = await open_governed(await start_server(servicer), policy)
    login = user_pb2.LoginRequest(email="a@b.c")

    # A spent budget fails before the breaker: traced and counted, not held against the callee.
    with deadline_after(0.0), pytest.raises(DeadlineExceededError):
        await stub.Login(login)
    assert breaker.throttle_for(TARGET).rejection_probability() == 0.0
    # One real failure opens it (min_requests=1); the next call is rejected locally.
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Login(login)
    assert not isinstance(failed.value, BreakerOpenError)
    with pytest.raises(BreakerOpenError):
        await stub.Login(login)

    assert servicer.calls == 1
    assert client_sample(metrics, "Login", "DEADLINE_EXCEEDED") == 1
    assert client_sample(metrics, "Login", "UNAVAILABLE") == 2
    finished = sorted(spans.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["rpc.grpc.status_code"] for s in finished] == [
        grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
        grpc.StatusCode.UNAVAILABLE.value[0],
        grpc.StatusCode.UNAVAILABLE.value[0],
    ]
    assert all(s.status.status_code is StatusCode.ERROR for s in finished)


async def test_an_open_breaker_answers_with_the_fallback_or_rejects_locally(
    start_server: StartServer,
    open_governed: OpenGoverned,
    metrics: GovernanceMetrics,
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
    stub = await open_governed(await start_server(servicer), policy)
    login = user_pb2.LoginRequest(email="a@b.c")
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Login(login)
        assert not isinstance(failed.value, BreakerOpenError)

    # Rejection probability is now (3 - 0) / 4 (real randomness): draw until a call is
    # rejected locally; 40 draws all getting through is as likely as 40 quarters in a row.
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
