"""Fixtures: real grpc.aio servers and channels on loopback, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kit.balancer import BalancedChannel, BalancerConfig, static_balanced_channel
from kit.governance import UnaryClientPolicy
from kit.governance.tests.support import (
    PROFILE,
    OpenChannel,
    OpenGoverned,
    ScriptedUserService,
    Spans,
    StartServer,
)
from webook.user.v1 import user_pb2_grpc


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts a UserService (plus the standard health service) on a loopback port."""
    servers: list[grpc.aio.Server] = []

    async def start(
        servicer: ScriptedUserService,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> str:
        server = grpc.aio.server(interceptors=list(interceptors))
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
        # grpc_health exposes its asyncio servicer as health.aio without re-exporting it.
        servicer_ = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(servicer_, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture
async def open_channel() -> AsyncIterator[OpenChannel]:
    """Opens plain insecure channels (no governance); closes them after the test."""
    channels: list[grpc.aio.Channel] = []

    def open_(address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        await channel.close(None)


@pytest.fixture
async def open_governed() -> AsyncIterator[OpenGoverned]:
    """Opens balanced channels governed by a client policy; closes them after the test."""
    channels: list[BalancedChannel] = []

    async def open_(
        addresses: str | Sequence[str], policy: UnaryClientPolicy
    ) -> user_pb2_grpc.UserServiceAsyncStub:
        channel = await static_balanced_channel(
            "governed-user",
            [addresses] if isinstance(addresses, str) else addresses,
            BalancerConfig(is_idempotent=lambda method: method == PROFILE),
            policy=policy,
        )
        channels.append(channel)
        return user_pb2_grpc.UserServiceStub(channel)

    yield open_
    for channel in channels:
        await channel.close()


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A tracer provider of our own, exporting to memory (the global one is set once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Spans(provider, exporter)
    provider.shutdown()
