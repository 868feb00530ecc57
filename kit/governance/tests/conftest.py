"""Fixtures: real grpc.aio servers and channels on loopback, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from kit.governance.tests.support import OpenChannel, ScriptedUserService, StartServer
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
    """Opens insecure channels with client interceptors; closes them after the test."""
    channels: list[grpc.aio.Channel] = []

    def open_(
        address: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
    ) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address, interceptors=list(interceptors))
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        await channel.close(None)
