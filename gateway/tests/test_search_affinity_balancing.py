"""The gateway's default balancing of ``SearchService.Search`` by the reader's affinity key,
over three real grpc.aio search servers that answer with their own name.

The ring itself (stable keys, about 1/n of the keys moving when a node joins, ejected
endpoints skipped and taking their keys back) is covered in ``kit/balancer/tests``
(``test_picker.py``, ``test_channel.py``); this checks the gateway's configuration of it:
``Search`` is hashed on ``affinity_key``, a key stays on its replica while the replica is
in the registry and moves (alone) when it leaves, and a request without a key is spread
round robin.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from gateway.settings import SEARCH, GatewaySettings
from kit.balancer import BalancedChannel, BalancerConfig, Policy
from kit.grpcx.client import check_hash_field
from kit.registry import ServiceInstance, StaticDiscovery
from webook.search.v1 import search_pb2, search_pb2_grpc

SEARCH_SERVICE = "webook.search.v1.SearchService"


class NamedSearchServer:
    """Answers every search with one hit whose title is the server's name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def search(
        self, request: search_pb2.SearchRequest, context: Any
    ) -> search_pb2.SearchResponse:
        self.calls += 1
        return search_pb2.SearchResponse(hits=[search_pb2.Hit(title=self.name)], total=1)

    async def start(self) -> tuple[grpc.aio.Server, str]:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            self.search,
            request_deserializer=search_pb2.SearchRequest.FromString,
            response_serializer=search_pb2.SearchResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SEARCH_SERVICE, {"Search": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, f"127.0.0.1:{port}"


@pytest.fixture
async def replicas() -> AsyncIterator[dict[str, tuple[NamedSearchServer, ServiceInstance]]]:
    """Three search servers and their registry instances, stopped after the test."""
    running: dict[str, tuple[NamedSearchServer, ServiceInstance]] = {}
    servers: list[grpc.aio.Server] = []
    for name in ("s1", "s2", "s3"):
        replica = NamedSearchServer(name)
        server, addr = await replica.start()
        servers.append(server)
        running[name] = (replica, ServiceInstance("search", name, addr, 1))
    yield running
    for server in servers:
        await server.stop(None)


def gateway_search_config() -> BalancerConfig:
    """The balancer configuration the gateway's default settings give the search peer."""
    balancing = GatewaySettings().peer_balancing["search"]
    for method, path in balancing.hash_methods.items():
        check_hash_field("search", method, path)
    return dataclasses.replace(
        BalancerConfig(),
        policy=Policy(balancing.policy),
        hash_methods=dict(balancing.hash_methods),
    )


async def test_equal_keys_stay_on_one_replica_while_it_lives_and_move_when_it_leaves(
    replicas: dict[str, tuple[NamedSearchServer, ServiceInstance]],
) -> None:
    assert GatewaySettings().peer_balancing["search"].hash_methods == {SEARCH: "affinity_key"}
    discovery = StaticDiscovery("search", (instance for _, instance in replicas.values()))
    async with BalancedChannel("search", discovery, gateway_search_config()) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)

        async def owner(key: str) -> str:
            request = search_pb2.SearchRequest(query="微服务", affinity_key=key)
            return (await stub.Search(request, timeout=5)).hits[0].title

        async def owners(keys: list[str]) -> dict[str, str]:
            return {key: await owner(key) for key in keys}

        keys = [f"{i:032x}" for i in range(90)]
        before = await owners(keys)
        assert await owners(keys) == before  # every key sticks to its replica
        assert set(before.values()) == {"s1", "s2", "s3"}

        # s2 leaves: its readers move (each to one replica), nobody else does.
        discovery.set_instances([replicas[name][1] for name in ("s1", "s3")])
        during = await owners(keys)
        assert "s2" not in during.values()
        assert {k: v for k, v in during.items() if before[k] != "s2"} == {
            k: v for k, v in before.items() if v != "s2"
        }
        assert await owners(keys) == during
        # It comes back: its readers return to it.
        discovery.set_instances([instance for _, instance in replicas.values()])
        assert await owners(keys) == before

        # No key: round robin over the three.
        for replica, _ in replicas.values():
            replica.calls = 0
        for _ in range(30):
            await owner("")
        assert Counter(replica.calls for replica, _ in replicas.values()) == Counter({10: 3})
