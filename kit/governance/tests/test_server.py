"""The fused server interceptor does what the five-interceptor server chain does.

Real ``grpc.aio`` servers on loopback, each behaviour checked the way the per-concern tests
check the chain: metrics by final status, SERVER spans continuing the caller's trace, load
shedding, rate limits with ``RetryInfo``, the deadline contextvar, error mapping as the
innermost step, exempt health checks, and the streaming kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kit.errors import NotFound
from kit.governance import (
    ClientTracingInterceptor,
    GovernanceConfig,
    GovernedServerInterceptor,
    RateLimit,
    RateLimitConfig,
    SheddingConfig,
    client_chain,
    current_deadline,
)
from kit.governance.tests.support import (
    CRASHING_USER_ID,
    MISSING_USER_ID,
    PROFILE,
    USER_SERVICE,
    OpenChannel,
    ScriptedUserService,
    StartServer,
    sample,
    wait_for,
)
from kit.grpcx.errors import app_error_from_rpc, map_handler_error
from webook.user.v1 import user_pb2, user_pb2_grpc

NUMBERS = "webook.test.v1.FusedNumbers"
NO_SHEDDING = SheddingConfig(enabled=False)


def handled(code: str, method: str = "Profile", service: str = USER_SERVICE) -> float:
    return sample("webook_grpc_server_handled_total", service=service, method=method, code=code)


def observed(method: str = "Profile", service: str = USER_SERVICE) -> float:
    return sample("webook_grpc_server_handling_seconds_count", service=service, method=method)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def call_profile(stub: user_pb2_grpc.UserServiceAsyncStub, user_id: int) -> grpc.StatusCode:
    try:
        await stub.Profile(user_pb2.ProfileRequest(id=user_id), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_outcome_is_counted_with_its_final_status(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    governor = GovernedServerInterceptor(GovernanceConfig(tracing=False, shedding=NO_SHEDDING))
    stub = user_pb2_grpc.UserServiceStub(
        open_channel(await start_server(ScriptedUserService(), [governor]))
    )
    codes = ("OK", "NOT_FOUND", "UNKNOWN")
    before = {code: handled(code) for code in codes}
    count_before = observed()

    assert await call_profile(stub, 1) == grpc.StatusCode.OK
    assert await call_profile(stub, 2) == grpc.StatusCode.OK
    assert await call_profile(stub, MISSING_USER_ID) == grpc.StatusCode.NOT_FOUND
    # Without an error mapper, an exception escaping the handler is UNKNOWN on the wire.
    assert await call_profile(stub, CRASHING_USER_ID) == grpc.StatusCode.UNKNOWN

    assert {code: handled(code) - before[code] for code in codes} == {
        "OK": 2,
        "NOT_FOUND": 1,
        "UNKNOWN": 1,
    }
    assert observed() - count_before == 4
    assert sample("webook_grpc_server_in_flight") == 0


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

    # Metrics see the status the mapper chose, as they did outside ErrorMappingInterceptor.
    assert handled("NOT_FOUND") - before["NOT_FOUND"] == 1
    assert handled("INTERNAL") - before["INTERNAL"] == 1
    assert handled("UNKNOWN") - before["UNKNOWN"] == 0


async def test_server_spans_continue_the_callers_trace_and_carry_the_status(
    start_server: StartServer,
    open_channel: OpenChannel,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    governor = GovernedServerInterceptor(
        GovernanceConfig(shedding=NO_SHEDDING), tracer_provider=provider
    )
    address = await start_server(ScriptedUserService(), [governor])
    stub = user_pb2_grpc.UserServiceStub(
        open_channel(address, client_chain(ClientTracingInterceptor(provider)))
    )

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Profile(user_pb2.ProfileRequest(id=MISSING_USER_ID))
    # Health checks are not traced.
    await health_pb2_grpc.HealthStub(open_channel(address)).Check(health_pb2.HealthCheckRequest())

    await wait_for(lambda: len(exporter.get_finished_spans()) >= 4)
    finished = exporter.get_finished_spans()
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
    labels = {"service": USER_SERVICE, "method": "Profile"}
    shed_before = sample("webook_grpc_server_rejected_total", reason="shed", **labels)
    exhausted_before = handled("RESOURCE_EXHAUSTED")

    overloaded = asyncio.gather(*(call_profile(stub, 1) for _ in range(12)))
    await wait_for(lambda: shedder.in_flight == 3)
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    codes = await overloaded

    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert servicer.calls == codes.count(grpc.StatusCode.OK)
    assert (
        sample("webook_grpc_server_rejected_total", reason="shed", **labels) - shed_before == shed
    )
    # Refused calls are still counted and timed, with the status the client got.
    assert handled("RESOURCE_EXHAUSTED") - exhausted_before == shed
    servicer.delay = 0.0
    assert [await call_profile(stub, 1) for _ in range(3)] == [grpc.StatusCode.OK] * 3
    assert shedder.in_flight == 0
    await governor.aclose()


async def test_the_rate_limit_refuses_with_retry_info_and_spares_health_checks(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    config = GovernanceConfig(
        tracing=False,
        shedding=NO_SHEDDING,
        rate_limit=RateLimitConfig(per_method={PROFILE: RateLimit(rate=0.5, burst=2)}),
    )
    servicer = ScriptedUserService()
    channel = open_channel(await start_server(servicer, [GovernedServerInterceptor(config)]))
    stub = user_pb2_grpc.UserServiceStub(channel)
    rejected_before = sample(
        "webook_grpc_server_rejected_total",
        service=USER_SERVICE,
        method="Profile",
        reason="ratelimit",
    )

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    await stub.Profile(user_pb2.ProfileRequest(id=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=1))
    for _ in range(3):
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    metadata = cast(grpc.aio.Metadata, caught.value.trailing_metadata())
    [raw] = metadata.get_all("grpc-status-details-bin")
    [detail] = status_pb2.Status.FromString(raw).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert 0 < info.retry_delay.ToNanoseconds() <= 2e9
    assert servicer.calls == 2
    rejected = sample(
        "webook_grpc_server_rejected_total",
        service=USER_SERVICE,
        method="Profile",
        reason="ratelimit",
    )
    assert rejected - rejected_before == 1


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


async def test_the_wrapped_handler_is_built_once_per_method(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    governor = GovernedServerInterceptor(GovernanceConfig(tracing=False, shedding=NO_SHEDDING))
    seen: list[object] = []

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    async def behaviour(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    details = cast(grpc.HandlerCallDetails, _Details(f"/{NUMBERS}/Echo"))
    for _ in range(3):
        seen.append(await governor.intercept_service(continuation, details))
    assert seen[0] is seen[1] is seen[2]
    assert seen[0] is not handler
    # A different handler object for the method (a re-registered service) is wrapped anew.
    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    assert await governor.intercept_service(continuation, details) is not seen[0]


class _Details:
    """The part of ``grpc.HandlerCallDetails`` interceptors read."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


class Numbers:
    """Streaming handlers in both grpc.aio styles, on raw bytes."""

    @staticmethod
    async def count(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        n = int(request)
        for i in range(abs(n)):
            if n < 0 and i == 1:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
            yield str(i).encode()

    @staticmethod
    async def write(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        for i in range(int(request)):
            await context.write(str(i).encode())

    @staticmethod
    async def total(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        return str(sum([int(r) async for r in requests])).encode()


async def test_streaming_kinds_run_inside_the_scope(open_channel: OpenChannel) -> None:
    governor = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=NO_SHEDDING), error_mapper=map_handler_error
    )
    server = grpc.aio.server(interceptors=[governor])
    handlers = {
        "Count": grpc.unary_stream_rpc_method_handler(Numbers.count),
        "Write": grpc.unary_stream_rpc_method_handler(Numbers.write),
        "Total": grpc.stream_unary_rpc_method_handler(Numbers.total),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(NUMBERS, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        channel = open_channel(f"127.0.0.1:{port}")
        count = channel.unary_stream(f"/{NUMBERS}/Count", None, None)
        write = channel.unary_stream(f"/{NUMBERS}/Write", None, None)
        total = channel.stream_unary(f"/{NUMBERS}/Total", None, None)
        keys = (("Count", "OK"), ("Count", "FAILED_PRECONDITION"), ("Write", "OK"), ("Total", "OK"))
        before = {key: handled(key[1], key[0], NUMBERS) for key in keys}

        assert [item async for item in count(b"3")] == [b"0", b"1", b"2"]
        assert [item async for item in write(b"2")] == [b"0", b"1"]
        received: list[bytes] = []

        async def drain(stream: AsyncIterable[bytes]) -> None:
            async for item in stream:
                received.append(item)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await drain(count(b"-3"))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert received == [b"0"]
        assert await total(iter([b"1", b"2", b"3"])) == b"6"

        # The server records a stream's end after the client has read its status.
        await wait_for(
            lambda: all(handled(k[1], k[0], NUMBERS) - v == 1 for k, v in before.items())
        )
    finally:
        await server.stop(None)
        await governor.aclose()
