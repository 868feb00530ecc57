"""Fixtures of the payment service's tests: a migrated database, the WeChat Pay emulator as
a real HTTP server, a stand-in for the gateway's ``/pay/callback`` and the real wiring.

- ``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
  session's MariaDB database (the payment tables emptied first, since tests share it);
- ``wechatpay_keys``: the local stack's keys (:func:`devstack.wechatpay_emulator.ensure_keys`)
  made once for the module;
- ``emulator``: the emulator on a free port, notification retries a thousand times faster;
- ``payment``: the payment process (``build_runner``) on a free port, calling the emulator;
  WeChat Pay's notifications reach it through ``callback``, which forwards them to
  ``HandleNotification`` as the gateway will, answering 204 or the refusal's HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.infra import free_port
from devstack.wechatpay_emulator import (
    WechatPayEmulator,
    WechatPayKeys,
    ensure_keys,
    serve_app,
    serving,
)
from kit.config import Mode
from kit.grpcx.server import ServiceRunner
from kit.migrations import migrated_and_emptied
from services.payment.__main__ import build_runner
from services.payment.repository.dao import Base
from services.payment.settings import PaymentSettings
from webook.payment.v1 import payment_pb2
from webook.payment.v1.payment_pb2_grpc import PaymentServiceStub

if TYPE_CHECKING:
    from webook.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub

RETRY_SCALE = 0.001
_HTTP_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
}


def trade_no() -> str:
    """A business trade number no other test uses (the broker's topic is shared)."""
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated payment database with empty payment tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("payment", empty_database_url, Base.metadata)


@pytest.fixture(scope="module")
def wechatpay_keys(tmp_path_factory: pytest.TempPathFactory) -> WechatPayKeys:
    """Merchant and platform keys and an API v3 key, made once for the module."""
    return ensure_keys(tmp_path_factory.mktemp("wechatpay") / "keys")


@dataclass
class Emulated:
    """The running emulator and its base URL."""

    emulator: WechatPayEmulator
    base_url: str


@pytest.fixture
async def emulator(wechatpay_keys: WechatPayKeys) -> AsyncIterator[Emulated]:
    """The WeChat Pay emulator served over HTTP on a free port."""
    emulator = WechatPayEmulator.from_keys(wechatpay_keys, retry_scale=RETRY_SCALE)
    async with serving(emulator, free_port()) as base_url:
        yield Emulated(emulator, base_url)


@dataclass
class Callback:
    """The gateway's stand-in: ``/pay/callback`` forwarding to ``HandleNotification``."""

    url: str
    stub: PaymentServiceAsyncStub | None = None
    answers: list[int] = field(default_factory=list)
    refuse_next: int = 0

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if self.refuse_next > 0:  # a gateway outage: WeChat Pay must retry
            self.refuse_next -= 1
            self.answers.append(503)
            return Response(status_code=503)
        if self.stub is None:
            self.answers.append(503)
            return Response(status_code=503)
        try:
            await self.stub.HandleNotification(
                payment_pb2.HandleNotificationRequest(headers=dict(request.headers), body=body),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            status = _HTTP_OF.get(exc.code(), 500)
            self.answers.append(status)
            return Response(status_code=status)
        self.answers.append(204)
        return Response(status_code=204)


@pytest.fixture
async def callback() -> AsyncIterator[Callback]:
    """``POST /pay/callback`` on a free port (its stub is set once the service runs)."""
    port = free_port()
    forwarder = Callback(url=f"http://127.0.0.1:{port}/pay/callback")
    app = Starlette(routes=[Route("/pay/callback", forwarder.handle, methods=["POST"])])
    async with serve_app(app, port):
        yield forwarder


@dataclass
class Payment:
    """A running payment process and a client of it."""

    stub: PaymentServiceAsyncStub
    runner: ServiceRunner
    settings: PaymentSettings


ServePayment = Callable[..., Awaitable[Payment]]


@pytest.fixture
async def serve_payment(
    database_url: str,
    kafka_bootstrap: str,
    wechatpay_keys: WechatPayKeys,
    emulator: Emulated,
    callback: Callback,
) -> AsyncIterator[ServePayment]:
    """``await serve_payment(**settings)``: a new payment process on a free port."""
    started: list[tuple[ServiceRunner, grpc.aio.Channel]] = []

    async def serve(**overrides: Any) -> Payment:
        env = wechatpay_keys.service_env("", emulator.base_url, callback.url)
        values: dict[str, Any] = {
            "mode": Mode.TEST,
            "database_url": database_url,
            "kafka_bootstrap": kafka_bootstrap,
            "grpc_port": 0,
            "metrics_port": -1,
            "shutdown_grace": 1.0,
            "outbox_poll_interval_seconds": 0.2,
            **{name.lower(): value for name, value in env.items()},
            **overrides,
        }
        settings = PaymentSettings(**values)
        runner = build_runner(settings)
        port = await runner.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        started.append((runner, channel))
        stub = PaymentServiceStub(channel)
        callback.stub = stub
        return Payment(stub, runner, settings)

    try:
        yield serve
    finally:
        callback.stub = None
        for runner, channel in reversed(started):
            await channel.close(None)
            await runner.stop()


@pytest.fixture
async def payment(serve_payment: ServePayment) -> Payment:
    """One payment process with the default test settings."""
    return await serve_payment()
