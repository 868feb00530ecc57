"""Load shedding: overload beyond the in-flight limit (or CPU saturation) is refused, then heals."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit.governance import LoadSheddingInterceptor, SheddingConfig
from kit.governance.tests.support import (
    USER_SERVICE,
    OpenChannel,
    ScriptedUserService,
    StartServer,
    sample,
    wait_for,
)
from webook.user.v1 import user_pb2, user_pb2_grpc


async def burst(stub: user_pb2_grpc.UserServiceAsyncStub, calls: int) -> list[grpc.StatusCode]:
    """Fire ``calls`` concurrent Profile calls and return their status codes."""

    async def one() -> grpc.StatusCode:
        try:
            await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    return list(await asyncio.gather(*(one() for _ in range(calls))))


async def test_calls_beyond_the_in_flight_limit_are_shed_until_load_stops(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    servicer = ScriptedUserService()
    servicer.delay = 0.5
    shedder = LoadSheddingInterceptor(SheddingConfig(max_in_flight=3, cpu_threshold=None))
    channel = open_channel(await start_server(servicer, [shedder]))
    stub = user_pb2_grpc.UserServiceStub(channel)
    shed_before = sample(
        "webook_grpc_server_rejected_total", service=USER_SERVICE, method="Profile", reason="shed"
    )

    overloaded = asyncio.create_task(burst(stub, 12))
    await wait_for(lambda: shedder.in_flight == 3)
    # Health checks are never shed, even while the server is full.
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    codes = await overloaded

    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert servicer.calls == codes.count(grpc.StatusCode.OK)
    assert (
        sample(
            "webook_grpc_server_rejected_total",
            service=USER_SERVICE,
            method="Profile",
            reason="shed",
        )
        - shed_before
        == shed
    )

    servicer.delay = 0.0
    assert await burst(stub, 3) == [grpc.StatusCode.OK] * 3
    assert shedder.in_flight == 0


async def test_hot_cpu_sheds_above_the_floor_and_recovers_when_it_cools(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    cpu = [1.0]
    config = SheddingConfig(
        max_in_flight=100,
        cpu_threshold=0.8,
        cpu_in_flight_floor=2,
        cpu_sample_interval=0.01,
        cpu_decay=0.0,
    )
    shedder = LoadSheddingInterceptor(config, cpu_reader=lambda: cpu[0])
    servicer = ScriptedUserService()
    servicer.delay = 0.2
    stub = user_pb2_grpc.UserServiceStub(open_channel(await start_server(servicer, [shedder])))
    try:
        shedder.start()
        await wait_for(lambda: shedder.cpu_usage >= 0.8)
        codes = await burst(stub, 6)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert codes.count(grpc.StatusCode.OK) >= 2

        cpu[0] = 0.1
        await wait_for(lambda: shedder.cpu_usage < 0.8)
        assert await burst(stub, 6) == [grpc.StatusCode.OK] * 6
    finally:
        await shedder.aclose()
    assert shedder.cpu_usage < 0.8
