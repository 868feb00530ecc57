"""Fixtures: fake user and code services on real gRPC ports, in-process fakes of the other
stubs, the WeChat emulator in process, the app inside its lifespan, a client.

Gateway tests never run service code: a service is a fake servicer on a real port (reached
through ``peers``, as in production) or a fake implementing its stub interface, handed to
``create_app`` in a :class:`~gateway.stubs.ServiceStubs` (:func:`fake_stubs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from devstack.wechat_emulator import DEV_APP_ID, WechatEmulator
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.stubs import ServiceStubs
from gateway.tests.fake_code_service import FakeCodeService
from gateway.tests.fake_user_service import FakeUserService
from kit.config import Mode
from kit.errors import AppError
from kit.grpcx.errors import rich_status_metadata
from webook.code.v1 import code_pb2_grpc
from webook.user.v1 import user_pb2_grpc

USER_AGENT = "Mozilla/5.0 (webook-tests) Chrome/130.0"
PASSWORD = "hello#world123"
GATEWAY_BASE = "http://gateway.test"
# The in-process WeChat emulator's (fake) origin; requests reach it through a transport.
WECHAT_BASE = "http://wechat.test"


def rpc_error(error: AppError) -> grpc.aio.AioRpcError:
    """What a stub raises when its service answers ``error`` (status + ``ErrorInfo``)."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode[error.kind.value],
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*rich_status_metadata(error)),
        details=error.message,
        debug_error_string=None,
    )


class NotFaked:
    """The stub of a service a test does not fake: awaiting any call fails the test."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        async def unexpected(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{self.service}.{method} called, but the test fakes no such call")

        return unexpected


def fake_stubs(**fakes: Any) -> ServiceStubs:
    """Stubs for ``create_app(stubs=...)``: ``fakes`` by service name, :class:`NotFaked` for
    the others."""
    stubs: dict[str, Any] = {f.name: NotFaked(f.name) for f in dataclasses.fields(ServiceStubs)}
    unknown = set(fakes) - set(stubs)
    assert not unknown, f"no such services: {sorted(unknown)}"
    return ServiceStubs(**(stubs | fakes))


@dataclass
class RunningUserService:
    """The fake user service and the server it runs in."""

    servicer: FakeUserService
    server: grpc.aio.Server
    port: int


@dataclass(frozen=True)
class LoginTokens:
    """Tokens from a login."""

    access: str
    refresh: str


@pytest.fixture
async def user_service() -> AsyncIterator[RunningUserService]:
    """A FakeUserService on a free loopback port."""
    servicer = FakeUserService()
    server = grpc.aio.server()
    user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield RunningUserService(servicer, server, port)
    await server.stop(None)


@dataclass
class RunningCodeService:
    """The fake code service and the server it runs in."""

    servicer: FakeCodeService
    server: grpc.aio.Server
    port: int


@pytest.fixture
async def code_service() -> AsyncIterator[RunningCodeService]:
    """A FakeCodeService on a free loopback port."""
    servicer = FakeCodeService()
    server = grpc.aio.server()
    code_pb2_grpc.add_CodeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield RunningCodeService(servicer, server, port)
    await server.stop(None)


@pytest.fixture
def wechat() -> WechatEmulator:
    """The WeChat OAuth emulator, reached in process (see :func:`wechat_transport`)."""
    return WechatEmulator()


def wechat_transport(emulator: WechatEmulator) -> httpx.ASGITransport:
    """A transport that delivers requests to ``emulator``."""
    return httpx.ASGITransport(app=emulator.asgi())


def make_settings(
    redis_url: str, user_port: int, *, sms_port: int | None = None, **overrides: Any
) -> GatewaySettings:
    """Test-mode settings pointing at the fake services, the test Redis and the emulator.

    Without ``sms_port`` the code service's address is a port nothing listens on.
    """
    values: dict[str, Any] = {
        "mode": Mode.TEST,
        "peers": {
            "user": f"127.0.0.1:{user_port}",
            "sms": f"127.0.0.1:{sms_port or free_port()}",
        },
        "redis_url": redis_url,
        "wechat_app_id": DEV_APP_ID,
        "wechat_authorize_base": WECHAT_BASE,
        "wechat_api_base": WECHAT_BASE,
        "wechat_redirect_uri": f"{GATEWAY_BASE}/oauth2/wechat/callback",
        # Redis is taken as hung when it stays silent past these bounds, and a fresh
        # session's check then answers 401. The defaults (50 ms for a read with a fallback,
        # 0.5 s for any command, 1 s for the revocation feed's pings) are shorter than a
        # pause of this test process on a loaded 2-core machine (a full garbage collection
        # of its heap): the answer is there, but read after the timer fired. The tests of
        # the fallbacks themselves build their own clients with tight bounds.
        "redis_fallback_wait_seconds": 2.0,
        "redis_timeout_seconds": 4.0,
        "session_revocation_feed_max_lag_seconds": 5.0,
        **overrides,
    }
    return GatewaySettings(**values)


@pytest.fixture
def settings(
    redis_url: str, user_service: RunningUserService, code_service: RunningCodeService
) -> GatewaySettings:
    """Default gateway settings for tests."""
    return make_settings(redis_url, user_service.port, sms_port=code_service.port)


@pytest.fixture
async def app(
    settings: GatewaySettings, redis_client: aioredis.Redis, wechat: WechatEmulator
) -> AsyncIterator[FastAPI]:
    """The gateway, started (clients open) on a flushed Redis."""
    application = create_app(settings, wechat_transport=wechat_transport(wechat))
    async with application.router.lifespan_context(application):
        yield application


def client_for(application: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client talking to ``application`` in process."""
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application, raise_app_exceptions=False),
        base_url=GATEWAY_BASE,
        headers=headers,
        **kwargs,
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the started gateway."""
    async with client_for(app) as http:
        yield http


async def signup(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
    """Create an account, asserting success."""
    resp = await client.post(
        "/users/signup", json={"email": email, "password": password, "confirmPassword": password}
    )
    assert resp.json() == {"code": 0, "msg": "OK", "data": None}


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **kwargs: Any
) -> LoginTokens:
    """Log in, asserting success; the tokens from the response headers."""
    resp = await client.post("/users/login", json={"email": email, "password": password}, **kwargs)
    assert resp.status_code == 200
    assert resp.json()["code"] == 0
    return LoginTokens(resp.headers["x-jwt-token"], resp.headers["x-refresh-token"])


@pytest.fixture
async def tokens(client: httpx.AsyncClient) -> LoginTokens:
    """A logged-in user (alice@example.com)."""
    await signup(client, "alice@example.com")
    return await login(client, "alice@example.com")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
