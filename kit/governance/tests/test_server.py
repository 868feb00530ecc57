"""The server composer on real ``grpc.aio`` servers: each concern, and their order.

Order: tracing → metrics → shedding → rate limit → deadline → [inner interceptors] → error
mapping. Checked here: refusals seen by metrics and spans, shedding before the rate limiter
spends a token, the deadline current inside, error mapping inside the inner interceptors;
and each concern's behaviour on the wire (SERVER spans continuing the caller's trace,
shedding and rate limits sparing health checks, ``RetryInfo``, the mapped status).
Metrics by final status: ``test_metrics.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind, StatusCode

from kit.errors import NotFound
from kit.governance import (
    BreakerConfig,
    GovernanceConfig,
    GovernedServerInterceptor,
    RateLimit,
    RateLimitConfig,
    SheddingConfig,
    UnaryClientPolicy,
    aclose_interceptors,
    current_deadline,
)
from kit.governance.tests.support import (
    CRASHING_USER_ID,
    LOGIN,
    MISSING_USER_ID,
    PROFILE,
    USER_SERVICE,
    ManualClock,
    OpenChannel,
    OpenGoverned,
    ScriptedUserService,
    Spans,
    StartServer,
    sample,
    wait_for,
)
from kit.grpcx.errors import ServerInterceptorBase, app_error_from_rpc, map_handler_error
from webook.user.v1 import user_pb2, user_pb2_grpc

NO_SHEDDING = SheddingConfig(enabled=False)
Behaviour = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def handled(code: str, method: str = "Profile") -> float:
    return sample(
        "webook_grpc_server_handled_total", service=USER_SERVICE, method=method, code=code
    )


def rejected(reason: str) -> float:
    return sample(
        "webook_grpc_server_rejected_total", service=USER_SERVICE, method="Profile", reason=reason
    )


async def call_profile(stub: user_pb2_grpc.UserServiceAsyncStub, user_id: int) -> grpc.StatusCode:
    try:
        await stub.Profile(user_pb2.ProfileRequest(id=user_id), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_call_through_both_default_composers(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    governor = GovernedServerInterceptor()
    servicer = ScriptedUserService()
    address = await start_server(servicer, [governor])
    stub = await open_governed(address, UnaryClientPolicy("user"))
    try:
        response = await stub.Profile(user_pb2.ProfileRequest(id=3))
        assert response.user.id == 3
        # The client policy's default 5 s timeout is the server's deadline.
        [budget] = servicer.time_remaining
        assert budget is not None
        assert 0 < budget <= 5.5

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Signup(user_pb2.SignupRequest())
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await aclose_interceptors([governor])
    assert governor.shedder is not None
    assert governor.shedder.sampler is not None
    assert not governor.shedder.sampler.running


class FailingUserService(ScriptedUserService):
    """``Profile`` raises a domain error for one id and a bug for another."""

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ProfileResponse:
        if request.id == MISSING_USER_ID:
            raise NotFound("USER_NOT_FOUND", "no such user", metadata={"id": "404"})
        return await super().Profile(request, context)


async def test_the_error_mapper_is_the_innermost_step(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    governor = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=NO_SHEDDING), error_mapper=map_handler_error
    )
    stub = user_pb2_grpc.UserServiceStub(
        open_channel(await start_server(FailingUserService(), [governor]))
    )
    before = {code: handled(code) for code in ("NOT_FOUND", "INTERNAL", "UNKNOWN")}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=MISSING_USER_ID))
    error = app_error_from_rpc(caught.value)
    assert (error.reason, error.message, error.metadata) == (
        "USER_NOT_FOUND",
        "no such user",
        {"id": "404"},
    )
    with pytest.raises(grpc.aio.AioRpcError) as crashed:
        await stub.Profile(user_pb2.ProfileRequest(id=CRASHING_USER_ID))
    assert crashed.value.code() is grpc.StatusCode.INTERNAL
    assert crashed.value.details() == "internal error"

    # Metrics see the status the mapper chose.
    assert handled("NOT_FOUND") - before["NOT_FOUND"] == 1
    assert handled("INTERNAL") - before["INTERNAL"] == 1
    assert handled("UNKNOWN") - before["UNKNOWN"] == 0


class RecordingInterceptor(ServerInterceptorBase):
    """An interceptor a service adds: sees the deadline and what the handler raises.

    For ``Login`` it raises a bug of its own, outside the error mapping.
    """

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []
        self.raised: list[type[BaseException]] = []

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        return self._recording(await continuation(details), details.method)

    def _recording(self, handler: Any, method: str) -> Any:
        behaviour: Behaviour = handler.unary_unary

        async def recorded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.deadlines.append(current_deadline())
            if method == LOGIN:
                raise RuntimeError("a bug in the interceptor")
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                self.raised.append(type(exc))
                raise

        return grpc.unary_unary_rpc_method_handler(
            recorded, handler.request_deserializer, handler.response_serializer
        )


async def test_inner_interceptors_run_inside_the_deadline_and_outside_the_error_mapping(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    inner = RecordingInterceptor()
    governor = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=NO_SHEDDING),
        error_mapper=map_handler_error,
        inner=[inner],
    )
    stub = user_pb2_grpc.UserServiceStub(
        open_channel(await start_server(FailingUserService(), [governor]))
    )
    before = {code: handled(code) for code in ("OK", "NOT_FOUND")}
    unknown_before = handled("UNKNOWN", "Login")

    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=4.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=MISSING_USER_ID), timeout=4.0)
    assert app_error_from_rpc(caught.value).reason == "USER_NOT_FOUND"
    # What the interceptor itself raises is outside the mapping: UNKNOWN, as in grpc.aio.
    with pytest.raises(grpc.aio.AioRpcError) as bug:
        await stub.Login(user_pb2.LoginRequest(email="a@b.c"))
    assert bug.value.code() is grpc.StatusCode.UNKNOWN

    # The deadline was current inside the interceptor; the NotFound reached it mapped.
    bounded, also_bounded, unbounded = inner.deadlines
    assert bounded is not None
    assert also_bounded is not None
    assert unbounded is None
    assert inner.raised == [grpc.aio.AbortError]
    assert handled("OK") - before["OK"] == 1
    assert handled("NOT_FOUND") - before["NOT_FOUND"] == 1
    assert handled("UNKNOWN", "Login") - unknown_before == 1


async def test_server_spans_continue_the_callers_trace_and_carry_the_status(
    start_server: StartServer,
    open_channel: OpenChannel,
    open_governed: OpenGoverned,
    spans: Spans,
) -> None:
    governor = GovernedServerInterceptor(
        GovernanceConfig(shedding=NO_SHEDDING), tracer_provider=spans.provider
    )
    address = await start_server(ScriptedUserService(), [governor])
    stub = await open_governed(
        address,
        UnaryClientPolicy(
            "user",
            GovernanceConfig(breaker=BreakerConfig(enabled=False)),
            tracer_provider=spans.provider,
        ),
    )

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Profile(user_pb2.ProfileRequest(id=MISSING_USER_ID))
    # Health checks are not traced.
    await health_pb2_grpc.HealthStub(open_channel(address)).Check(health_pb2.HealthCheckRequest())

    await wait_for(lambda: len(spans.exporter.get_finished_spans()) >= 4)
    finished = spans.exporter.get_finished_spans()
    assert len(finished) == 4
    servers = sorted(
        (s for s in finished if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    clients = sorted(
        (s for s in finished if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    for client, server in zip(clients, servers, strict=True):
        client_context, server_context = client.get_span_context(), server.get_span_context()
        assert client_context is not None
        assert server_context is not None
        assert server_context.trace_id == client_context.trace_id
        assert server.parent is not None
        assert server.parent.span_id == client_context.span_id
        assert server.name == f"{USER_SERVICE}/Profile"
        assert server.attributes is not None
        assert server.attributes["rpc.system"] == "grpc"
        assert server.attributes["rpc.service"] == USER_SERVICE
        assert server.attributes["rpc.method"] == "Profile"
    ok, missing = servers
    assert ok.attributes is not None
    assert missing.attributes is not None
    assert ok.attributes["rpc.grpc.status_code"] == 0
    assert ok.status.status_code is StatusCode.UNSET
    assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing.status.status_code is StatusCode.ERROR


async def test_calls_beyond_the_in_flight_limit_are_shed_but_health_checks_are_not(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    servicer = ScriptedUserService()
    servicer.delay = 0.5
    governor = GovernedServerInterceptor(
        GovernanceConfig(
            tracing=False, shedding=SheddingConfig(max_in_flight=3, cpu_threshold=None)
        )
    )
    shedder = governor.shedder
    assert shedder is not None
    channel = open_channel(await start_server(servicer, [governor]))
    stub = user_pb2_grpc.UserServiceStub(channel)
    shed_before = rejected("shed")
    exhausted_before = handled("RESOURCE_EXHAUSTED")

    overloaded = asyncio.gather(*(call_profile(stub, 1) for _ in range(12)))
    await wait_for(lambda: shedder.in_flight == 3)
    # Health checks are never shed, even while the server is full.
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    codes = await overloaded

    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert servicer.calls == codes.count(grpc.StatusCode.OK)
    assert rejected("shed") - shed_before == shed
    # Refused calls are still counted and timed, with the status the client got.
    assert handled("RESOURCE_EXHAUSTED") - exhausted_before == shed
    servicer.delay = 0.0
    assert [await call_profile(stub, 1) for _ in range(3)] == [grpc.StatusCode.OK] * 3
    assert shedder.in_flight == 0
    await governor.aclose()


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay carried in the error's status details, in seconds."""
    # grpc-stubs type it as the sync API's metadata tuple; grpc.aio returns its Metadata.
    metadata = cast(grpc.aio.Metadata, error.trailing_metadata())
    [raw] = metadata.get_all("grpc-status-details-bin")
    [detail] = status_pb2.Status.FromString(raw).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return float(info.retry_delay.ToNanoseconds()) / 1e9


async def test_the_rate_limit_refuses_with_retry_info_until_a_token_is_back(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    clock = ManualClock()
    config = GovernanceConfig(
        tracing=False,
        shedding=NO_SHEDDING,
        rate_limit=RateLimitConfig(per_method={PROFILE: RateLimit(rate=5, burst=2)}),
    )
    servicer = ScriptedUserService()
    channel = open_channel(
        await start_server(servicer, [GovernedServerInterceptor(config, clock=clock)])
    )
    stub = user_pb2_grpc.UserServiceStub(channel)
    rejected_before = rejected("ratelimit")

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    await stub.Profile(user_pb2.ProfileRequest(id=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=1))
    # Health checks and unlimited methods are never limited.
    for _ in range(3):
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await stub.Login(user_pb2.LoginRequest(email="a@b.c"))

    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay(caught.value) == pytest.approx(0.2)
    assert servicer.calls == 2 + 3
    assert rejected("ratelimit") - rejected_before == 1

    clock.advance(0.2)
    await stub.Profile(user_pb2.ProfileRequest(id=1))
    assert servicer.calls == 2 + 3 + 1


async def test_refusals_are_traced_and_counted_and_a_shed_call_spends_no_token(
    start_server: StartServer,
    open_channel: OpenChannel,
    spans: Spans,
) -> None:
    config = GovernanceConfig(
        shedding=SheddingConfig(max_in_flight=1, cpu_threshold=None),
        rate_limit=RateLimitConfig(per_method={PROFILE: RateLimit(rate=1, burst=2)}),
    )
    governor = GovernedServerInterceptor(
        config, tracer_provider=spans.provider, clock=ManualClock()
    )
    shedder = governor.shedder
    assert shedder is not None
    servicer = ScriptedUserService()
    servicer.delay = 0.5
    stub = user_pb2_grpc.UserServiceStub(open_channel(await start_server(servicer, [governor])))
    before = {reason: rejected(reason) for reason in ("shed", "ratelimit")}
    exhausted_before = handled("RESOURCE_EXHAUSTED")

    slow = asyncio.ensure_future(call_profile(stub, 1))  # takes the first token
    await wait_for(lambda: shedder.in_flight == 1)
    assert await call_profile(stub, 1) is grpc.StatusCode.RESOURCE_EXHAUSTED  # shed
    assert await slow is grpc.StatusCode.OK
    servicer.delay = 0.0
    # The shed call took no token: the second one is still there, then the limit applies.
    assert await call_profile(stub, 1) is grpc.StatusCode.OK
    assert await call_profile(stub, 1) is grpc.StatusCode.RESOURCE_EXHAUSTED
    await governor.aclose()

    assert {reason: rejected(reason) - before[reason] for reason in before} == {
        "shed": 1,
        "ratelimit": 1,
    }
    assert handled("RESOURCE_EXHAUSTED") - exhausted_before == 2
    await wait_for(lambda: len(spans.exporter.get_finished_spans()) == 4)
    codes = sorted(
        (span.start_time or 0, (span.attributes or {})["rpc.grpc.status_code"])
        for span in spans.exporter.get_finished_spans()
    )
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert [code for _, code in codes] == [0, exhausted, 0, exhausted]


class DeadlineRecorder(ScriptedUserService):
    """Records the current deadline (``kit.governance.context``) the handler runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.deadlines: list[float | None] = []

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ProfileResponse:
        self.deadlines.append(current_deadline())
        return await super().Profile(request, context)


async def test_the_incoming_deadline_is_current_while_the_handler_runs(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    servicer = DeadlineRecorder()
    governor = GovernedServerInterceptor(GovernanceConfig(tracing=False, shedding=NO_SHEDDING))
    stub = user_pb2_grpc.UserServiceStub(open_channel(await start_server(servicer, [governor])))
    loop = asyncio.get_running_loop()

    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=4.0)
    await stub.Profile(user_pb2.ProfileRequest(id=1))

    bounded, unbounded = servicer.deadlines
    assert bounded is not None
    assert 0 < bounded - loop.time() <= 4.0 + 0.5
    assert unbounded is None


class _Details:
    """The part of ``grpc.HandlerCallDetails`` interceptors read."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def test_the_wrapped_handler_is_built_once_per_method() -> None:
    governor = GovernedServerInterceptor(GovernanceConfig(tracing=False, shedding=NO_SHEDDING))
    seen: list[object] = []

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    handler = grpc.unary_unary_rpc_method_handler(echo)
    details = cast(grpc.HandlerCallDetails, _Details("/webook.test.v1.Numbers/Echo"))
    for _ in range(3):
        seen.append(await governor.intercept_service(continuation, details))
    assert seen[0] is seen[1] is seen[2]
    assert seen[0] is not handler
    # A different handler object for the method (a re-registered service) is wrapped anew.
    handler = grpc.unary_unary_rpc_method_handler(echo)
    assert await governor.intercept_service(continuation, details) is not seen[0]


async def test_streaming_handlers_are_served_as_registered() -> None:
    governor = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=NO_SHEDDING), error_mapper=map_handler_error
    )

    async def count(request: bytes, context: Any) -> Any:
        yield request

    streaming = grpc.unary_stream_rpc_method_handler(count)

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return streaming

    for method in ("/webook.test.v1.Numbers/Count", "/grpc.health.v1.Health/Watch"):
        details = cast(grpc.HandlerCallDetails, _Details(method))
        assert await governor.intercept_service(continuation, details) is streaming
