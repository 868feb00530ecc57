"""Test doubles shared by the governance tests: a scriptable UserService, clock and randomness.

Servers are governed by :class:`kit.governance.GovernedServerInterceptor` and clients by
:class:`kit.governance.UnaryClientPolicy` on a balanced channel, as in the services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from kit.governance import UnaryClientPolicy
from webook.user.v1 import user_pb2, user_pb2_grpc

PROFILE = "/webook.user.v1.UserService/Profile"
LOGIN = "/webook.user.v1.UserService/Login"
USER_SERVICE = "webook.user.v1.UserService"

MISSING_USER_ID = 404
"""``Profile`` of this id aborts with NOT_FOUND."""
CRASHING_USER_ID = 500
"""``Profile`` of this id raises an unexpected exception (UNKNOWN on the wire)."""


class ScriptedUserService(user_pb2_grpc.UserServiceServicer):
    """A UserService whose ``Profile`` and ``Login`` can be made to fail, stall or call out."""

    def __init__(self) -> None:
        self.calls = 0
        self.failure: grpc.StatusCode | None = None
        self.delay = 0.0
        self.time_remaining: list[float | None] = []
        self.invocation_metadata: list[dict[str, str | bytes]] = []
        self.downstream: Callable[[], Awaitable[object]] | None = None

    async def _serve(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls += 1
        remaining: float | None = context.time_remaining()
        self.time_remaining.append(remaining)
        self.invocation_metadata.append(dict(context.invocation_metadata() or ()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.downstream is not None:
            await self.downstream()
        if self.failure is not None:
            await context.abort(self.failure, "scripted failure")

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ProfileResponse:
        await self._serve(context)
        if request.id == MISSING_USER_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        if request.id == CRASHING_USER_ID:
            raise RuntimeError("scripted crash")
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id, nickname="real"))

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.LoginResponse:
        await self._serve(context)
        return user_pb2.LoginResponse(user=user_pb2.User(id=1, email=request.email))

    async def _unimplemented(self, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")

    async def Signup(
        self, request: user_pb2.SignupRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.SignupResponse:
        await self._unimplemented(context)

    async def UpdateNonSensitiveInfo(
        self,
        request: user_pb2.UpdateNonSensitiveInfoRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.UpdateNonSensitiveInfoResponse:
        await self._unimplemented(context)

    async def FindOrCreateByPhone(
        self,
        request: user_pb2.FindOrCreateByPhoneRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.FindOrCreateByPhoneResponse:
        await self._unimplemented(context)

    async def FindOrCreateByWechat(
        self,
        request: user_pb2.FindOrCreateByWechatRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> user_pb2.FindOrCreateByWechatResponse:
        await self._unimplemented(context)

    async def GetByIds(
        self, request: user_pb2.GetByIdsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.GetByIdsResponse:
        await self._unimplemented(context)

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ListUsersResponse:
        await self._unimplemented(context)


class StartServer(Protocol):
    """The ``start_server`` fixture: serves a UserService, returns its address."""

    async def __call__(
        self,
        servicer: ScriptedUserService,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> str: ...


class OpenChannel(Protocol):
    """The ``open_channel`` fixture: an ungoverned channel, closed after the test."""

    def __call__(self, address: str) -> grpc.aio.Channel: ...


class OpenGoverned(Protocol):
    """The ``open_governed`` fixture: a balanced channel governed by ``policy``.

    ``Profile`` is the one idempotent method (it fails over); the channel is closed after
    the test.
    """

    async def __call__(
        self, addresses: str | Sequence[str], policy: UnaryClientPolicy
    ) -> user_pb2_grpc.UserServiceAsyncStub: ...


@dataclass(frozen=True)
class Spans:
    """The ``spans`` fixture: a tracer provider and the exporter of its finished spans."""

    provider: TracerProvider
    exporter: InMemorySpanExporter


class ManualClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedRandom:
    """A "random" source that returns whatever the test sets."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def sample(name: str, **labels: str) -> float:
    """A sample of the default Prometheus registry, 0 when it does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail the test after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {seconds} s")
