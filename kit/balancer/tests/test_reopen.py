"""BalancedChannel.reopen: every endpoint gets a new channel from the factory (new client
credentials), calls in flight finish on the old channels, which then close, and the
endpoints keep their health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from kit.balancer import BalancedChannel, BalancerConfig, Health
from kit.balancer.tests.servers import ReportingUserService, start_server
from kit.registry import ServiceInstance, StaticDiscovery
from kit.registry.tests.helpers import eventually
from webook.user.v1 import user_pb2, user_pb2_grpc

PROFILE = "/webook.user.v1.UserService/Profile"


class RecordingFactory:
    """Opens plain channels and remembers each one, in order."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, grpc.aio.Channel]] = []

    def __call__(self, addr: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(addr)
        self.opened.append((addr, channel))
        return channel


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, tuple[ReportingUserService, str]]]:
    """Two user servers: "a" answers, "b" fails every call with UNAVAILABLE."""
    started: list[grpc.aio.Server] = []
    found: dict[str, tuple[ReportingUserService, str]] = {}
    for name, fail_with in (("a", None), ("b", grpc.StatusCode.UNAVAILABLE)):
        service = ReportingUserService(name, fail_with=fail_with)
        server, addr = await start_server(service)
        started.append(server)
        found[name] = (service, addr)
    yield found
    await asyncio.gather(*(server.stop(None) for server in started))


async def test_reopen_moves_new_calls_to_new_channels_and_drains_the_old(
    servers: dict[str, tuple[ReportingUserService, str]],
) -> None:
    service, addr = servers["a"]
    factory = RecordingFactory()
    discovery = StaticDiscovery("user", [ServiceInstance("user", "a", addr)])
    config = BalancerConfig(close_grace=30)
    async with BalancedChannel("user", discovery, config, channel_factory=factory) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        service.gate = asyncio.Event()
        slow_call = stub.Profile(user_pb2.ProfileRequest(id=1), timeout=30)
        await eventually(lambda: service.in_flight == 1, 10, "a call in flight")
        old = factory.opened[0][1]

        channel.reopen()

        assert [opened_addr for opened_addr, _ in factory.opened] == [addr, addr]
        new = factory.opened[1][1]
        assert [getattr(e, "channel", None) for e in channel.endpoints()] == [new]
        service.gate.set()
        assert (await slow_call).user.id == 1, "the call in flight finished on the old channel"
        await eventually(
            lambda: old.get_state() is grpc.ChannelConnectivity.SHUTDOWN,
            10,
            "the old channel closed once drained",
        )
        assert (await stub.Profile(user_pb2.ProfileRequest(id=2), timeout=10)).user.id == 2
        assert new.get_state() is grpc.ChannelConnectivity.READY


async def test_reopened_endpoints_keep_their_health(
    servers: dict[str, tuple[ReportingUserService, str]],
) -> None:
    instances = [ServiceInstance("user", name, addr) for name, (_, addr) in servers.items()]
    config = BalancerConfig(
        idempotent_methods=frozenset({PROFILE}), eject_after_failures=2, ejection_seconds=60
    )
    async with BalancedChannel("user", StaticDiscovery("user", instances), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(6):
            assert (await stub.Profile(user_pb2.ProfileRequest(id=i), timeout=10)).user.id == i
        before = {e.key: (e.health, e.effective_weight) for e in channel.endpoints()}
        assert before["b"][0] is Health.EJECTED

        channel.reopen()

        assert {e.key: (e.health, e.effective_weight) for e in channel.endpoints()} == before
        calls_to_b = servers["b"][0].calls["Profile"]
        for i in range(4):
            assert (await stub.Profile(user_pb2.ProfileRequest(id=i), timeout=10)).user.id == i
        assert servers["b"][0].calls["Profile"] == calls_to_b, "still ejected: no call sent"


async def test_reopen_after_close_does_nothing(
    servers: dict[str, tuple[ReportingUserService, str]],
) -> None:
    factory = RecordingFactory()
    discovery = StaticDiscovery("user", [ServiceInstance("user", "a", servers["a"][1])])
    channel = BalancedChannel("user", discovery, channel_factory=factory)
    await channel.close()
    channel.reopen()
    assert len(factory.opened) == 1
