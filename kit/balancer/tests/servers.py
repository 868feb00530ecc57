"""Real grpc.aio test servers: a UserService that reports who served each call."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc

from webook.user.v1 import user_pb2


class ReportingUserService:
    """Answers ``Profile`` and ``Signup`` with its own name as the user's nickname.

    Other ``UserService`` methods are not served (grpc answers UNIMPLEMENTED).

    ``fail_with`` makes every call fail with that status; ``served`` (shared between
    servers) records the order in which servers answered; ``gate``, when set, holds calls
    until it opens, tracking how many are in flight.
    """

    def __init__(
        self,
        name: str,
        served: list[str] | None = None,
        fail_with: grpc.StatusCode | None = None,
    ) -> None:
        self.name = name
        self.served = served if served is not None else []
        self.fail_with = fail_with
        self.calls: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def _handle(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls[method] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.fail_with is not None:
            await context.abort(self.fail_with, f"{self.name} is failing")
        self.served.append(self.name)

    async def profile(
        self,
        request: user_pb2.ProfileRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.ProfileResponse:
        await self._handle("Profile", context)
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id, nickname=self.name))

    async def signup(
        self,
        request: user_pb2.SignupRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.SignupResponse:
        await self._handle("Signup", context)
        return user_pb2.SignupResponse(user=user_pb2.User(email=request.email, nickname=self.name))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The generic handler serving this object's methods as ``UserService``."""
        return grpc.method_handlers_generic_handler(
            "webook.user.v1.UserService",
            {
                "Profile": grpc.unary_unary_rpc_method_handler(
                    self.profile,
                    request_deserializer=user_pb2.ProfileRequest.FromString,
                    response_serializer=user_pb2.ProfileResponse.SerializeToString,
                ),
                "Signup": grpc.unary_unary_rpc_method_handler(
                    self.signup,
                    request_deserializer=user_pb2.SignupRequest.FromString,
                    response_serializer=user_pb2.SignupResponse.SerializeToString,
                ),
            },
        )


async def start_server(service: ReportingUserService, port: int = 0) -> tuple[grpc.aio.Server, str]:
    """Start a server for ``service`` on loopback."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, f"127.0.0.1:{bound}"
