"""BalancedChannel.reconfigure on a live channel: operator weights over the registry's,
ejection tunables, and the policy, applied to the next calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from kit.balancer import BalancedChannel, BalancerConfig, Health, Policy
from kit.balancer.tests.servers import ReportingUserService, start_server
from kit.governance import UnaryClientPolicy
from kit.grpcx.client import ClientTuning, ServiceClients
from kit.registry import ServiceInstance, StaticDiscovery
from webook.user.v1 import user_pb2, user_pb2_grpc


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, str]]:
    """Two user servers sharing one ``served`` log: name -> address."""
    served: list[str] = []
    started: list[grpc.aio.Server] = []
    addresses: dict[str, str] = {}
    for name in ("a", "b"):
        server, addr = await start_server(ReportingUserService(name, served=served))
        started.append(server)
        addresses[name] = addr
    yield addresses
    await asyncio.gather(*(server.stop(None) for server in started))


async def test_operator_weights_move_traffic_and_unnamed_endpoints_take_the_registrys(
    servers: dict[str, str],
) -> None:
    discovery = StaticDiscovery(
        "user", [ServiceInstance("user", name, addr) for name, addr in servers.items()]
    )
    async with BalancedChannel("user", discovery, BalancerConfig()) as channel:
        weights = {sc.key: sc.weight for sc in channel.endpoints()}
        assert weights == {"a": 1.0, "b": 1.0}
        channel.reconfigure(BalancerConfig(), {servers["a"]: 9})
        assert {sc.key: sc.weight for sc in channel.endpoints()} == {"a": 9.0, "b": 1.0}
        stub = user_pb2_grpc.UserServiceStub(channel)
        picks: Counter[str] = Counter()
        for _ in range(20):
            reply = await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=10)
            picks[reply.user.nickname] += 1
        # Smooth weighted round robin: exactly 9 to 1 over whole rounds of 10.
        assert picks == Counter({"a": 18, "b": 2})
        channel.reconfigure(BalancerConfig())
        assert {sc.key: sc.weight for sc in channel.endpoints()} == {"a": 1.0, "b": 1.0}


async def test_ejection_tunables_apply_to_endpoints_already_open(
    servers: dict[str, str],
) -> None:
    discovery = StaticDiscovery("user", [ServiceInstance("user", "a", servers["a"])])
    async with BalancedChannel("user", discovery, BalancerConfig()) as channel:
        (endpoint,) = channel.endpoints()
        channel.reconfigure(
            BalancerConfig(eject_after_failures=1, ejection_seconds=30.0, max_ejection_seconds=60.0)
        )
        assert channel.config.eject_after_failures == 1
        assert channel.endpoints()[0] is endpoint  # same endpoint, health kept
        assert endpoint.record_failure(0.0)  # one failure now ejects
        assert endpoint.health is Health.EJECTED
        assert endpoint.ejected_until == pytest.approx(30.0)


async def test_the_policy_may_change_on_a_live_channel(servers: dict[str, str]) -> None:
    discovery = StaticDiscovery(
        "user", [ServiceInstance("user", name, addr) for name, addr in servers.items()]
    )
    async with BalancedChannel("user", discovery, BalancerConfig()) as channel:
        assert not channel.hashing
        hashed = BalancerConfig(policy=Policy.CONSISTENT_HASH, hash_request_field="id")
        channel.reconfigure(hashed)
        assert channel.hashing
        stub = user_pb2_grpc.UserServiceStub(channel)
        owners = {
            (await stub.Profile(user_pb2.ProfileRequest(id=7), timeout=10)).user.nickname
            for _ in range(6)
        }
        assert len(owners) == 1  # one id, one owner
        channel.reconfigure(BalancerConfig())
        assert not channel.hashing


async def test_service_clients_tune_every_live_channel(servers: dict[str, str]) -> None:
    """What a process's live ``client_tuning`` does (ServiceClients.tune): weights by
    address, ejection and breaker thresholds, on the channels already open."""
    clients = ServiceClients(registry=None, peers={"user": ",".join(servers.values())})
    try:
        channel = await clients.channel("user")
        assert isinstance(channel, BalancedChannel)
        policy = channel.policy
        assert isinstance(policy, UnaryClientPolicy)
        assert policy.breaker is not None
        breaker = policy.breaker
        clients.tune(
            ClientTuning(
                breaker_k=1.2,
                breaker_min_requests=5,
                eject_after_failures=2,
                endpoint_weights={"user": {servers["b"]: 4}},
            )
        )
        assert policy.breaker is breaker
        assert (breaker.config.k, breaker.config.min_requests) == (1.2, 5)
        assert channel.config.eject_after_failures == 2
        weights = sorted(endpoint.weight for endpoint in channel.endpoints())
        assert weights == [1.0, 4.0]
        with pytest.raises(ValueError, match="max_ejection_seconds"):
            ClientTuning(ejection_seconds=90.0)  # over the default cap of 60 s
        # Fields left unset keep the process's own configuration.
        clients.tune(ClientTuning())
        assert channel.config.eject_after_failures == BalancerConfig().eject_after_failures
    finally:
        await clients.close()
