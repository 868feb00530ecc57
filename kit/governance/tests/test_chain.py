"""The default chains: their order, and real calls (unary and streaming) through both of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from kit.governance import (
    BreakerConfig,
    CircuitBreakerInterceptor,
    ClientDeadlineInterceptor,
    ClientMetricsInterceptor,
    ClientTracingInterceptor,
    DeadlineConfig,
    GovernanceConfig,
    LoadSheddingInterceptor,
    RateLimit,
    RateLimitConfig,
    RateLimitInterceptor,
    ServerDeadlineInterceptor,
    ServerMetricsInterceptor,
    ServerTracingInterceptor,
    aclose_interceptors,
    client_interceptors,
    server_interceptors,
)
from kit.governance._rpc import UnaryStreamAdapter
from kit.governance.tests.support import (
    PROFILE,
    USER_SERVICE,
    OpenChannel,
    ScriptedUserService,
    StartServer,
    sample,
)
from webook.user.v1 import user_pb2, user_pb2_grpc

NUMBERS = "webook.test.v1.Numbers"
COUNT = f"/{NUMBERS}/Count"
WRITE = f"/{NUMBERS}/Write"


def test_default_chains_are_in_the_documented_order() -> None:
    server = server_interceptors(
        GovernanceConfig(rate_limit=RateLimitConfig(default=RateLimit(rate=100, burst=100)))
    )
    client = client_interceptors("user")

    assert [type(i) for i in server] == [
        ServerTracingInterceptor,
        ServerMetricsInterceptor,
        LoadSheddingInterceptor,
        RateLimitInterceptor,
        ServerDeadlineInterceptor,
    ]
    unary, streaming = client[:4], client[4:]
    assert [type(i) for i in unary] == [
        ClientTracingInterceptor,
        ClientMetricsInterceptor,
        ClientDeadlineInterceptor,
        CircuitBreakerInterceptor,
    ]
    # grpc.aio files each object under one RPC kind: adapters apply the same chain to streams.
    assert all(isinstance(i, UnaryStreamAdapter) for i in streaming)
    assert [id(cast(UnaryStreamAdapter, i).interceptor) for i in streaming] == [
        id(i) for i in unary
    ]
    assert RateLimitInterceptor not in {type(i) for i in server_interceptors()}


async def test_unary_calls_through_both_default_chains(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    server_chain = server_interceptors()
    servicer = ScriptedUserService()
    channel = open_channel(await start_server(servicer, server_chain), client_interceptors("user"))
    stub = user_pb2_grpc.UserServiceStub(channel)
    shedder = next(i for i in server_chain if isinstance(i, LoadSheddingInterceptor))
    try:
        response = await stub.Profile(user_pb2.ProfileRequest(id=3))
        assert response.user.id == 3
        [budget] = servicer.time_remaining
        assert budget is not None
        assert 0 < budget <= 5.5

        unknown = channel.unary_unary(f"/{NUMBERS}/Missing", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unknown(b"")
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await aclose_interceptors(server_chain)
    assert shedder.sampler is not None
    assert not shedder.sampler.running


class Numbers:
    """Response-streaming handlers in both grpc.aio styles, on raw bytes."""

    @staticmethod
    async def count(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """An async generator: yields 0..n-1, or aborts after the first item if n is negative."""
        n = int(request)
        for i in range(abs(n)):
            if n < 0 and i == 1:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
            yield str(i).encode()

    @staticmethod
    async def write(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A coroutine writing its responses with ``context.write``."""
        for i in range(int(request)):
            await context.write(str(i).encode())

    @staticmethod
    async def total(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """A client-streaming handler summing what it gets."""
        return str(sum([int(r) async for r in requests])).encode()


@pytest.fixture
async def numbers_address() -> AsyncIterator[
    tuple[str, list[grpc.aio.ServerInterceptor[Any, Any]]]
]:
    chain = server_interceptors(GovernanceConfig(deadline=DeadlineConfig(default_timeout=5.0)))
    server = grpc.aio.server(interceptors=chain)
    handlers = {
        "Count": grpc.unary_stream_rpc_method_handler(Numbers.count),
        "Write": grpc.unary_stream_rpc_method_handler(Numbers.write),
        "Total": grpc.stream_unary_rpc_method_handler(Numbers.total),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(NUMBERS, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", chain
    await server.stop(None)
    await aclose_interceptors(chain)


async def test_streaming_calls_through_both_default_chains(
    numbers_address: tuple[str, list[grpc.aio.ServerInterceptor[Any, Any]]],
    open_channel: OpenChannel,
) -> None:
    address, _ = numbers_address
    channel = open_channel(address, client_interceptors("numbers"))
    count = channel.unary_stream(COUNT, None, None)
    write = channel.unary_stream(WRITE, None, None)
    total = channel.stream_unary(f"/{NUMBERS}/Total", None, None)

    def handled(side: str, method: str, code: str) -> float:
        return sample(
            f"webook_grpc_{side}_handled_total", service=NUMBERS, method=method, code=code
        )

    before = {
        (side, method, code): handled(side, method, code)
        for side in ("server", "client")
        for method, code in (("Count", "OK"), ("Count", "FAILED_PRECONDITION"), ("Write", "OK"))
    }

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

    async def settled() -> dict[tuple[str, str, str], float]:
        # The server records a stream's end after the client has read its status.
        for _ in range(100):
            after = {key: handled(*key) - value for key, value in before.items()}
            if all(v == 1 for v in after.values()):
                return after
            await asyncio.sleep(0.01)
        return after

    result = await settled()
    assert set(result.values()) == {1}, result


async def test_default_client_chain_degrades_to_the_fallback(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    servicer = ScriptedUserService()
    servicer.failure = grpc.StatusCode.UNAVAILABLE

    def fallback(request: user_pb2.ProfileRequest) -> user_pb2.ProfileResponse:
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id, nickname="fallback"))

    config = GovernanceConfig(breaker=BreakerConfig(min_requests=1))
    chain = client_interceptors("chain-fallback-user", config, fallbacks={PROFILE: fallback})
    stub = user_pb2_grpc.UserServiceStub(open_channel(await start_server(servicer), chain))
    ok_before = sample(
        "webook_grpc_client_handled_total", service=USER_SERVICE, method="Profile", code="OK"
    )

    async def profile() -> user_pb2.ProfileResponse | grpc.StatusCode:
        try:
            return await stub.Profile(user_pb2.ProfileRequest(id=9))
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    # Once a call failed, each call is rejected with probability >= 1/2 (real randomness):
    # 200 calls all getting through is as likely as 200 heads in a row.
    outcomes = [await profile()]
    while len(outcomes) < 200 and isinstance(outcomes[-1], grpc.StatusCode):
        outcomes.append(await profile())
    *failures, answer = outcomes
    assert set(failures) == {grpc.StatusCode.UNAVAILABLE}
    assert isinstance(answer, user_pb2.ProfileResponse)
    assert answer.user.nickname == "fallback"
    # The caller got an answer: client metrics count the degraded call as OK.
    assert (
        sample(
            "webook_grpc_client_handled_total", service=USER_SERVICE, method="Profile", code="OK"
        )
        - ok_before
        == 1
    )
