"""Fixtures of the account service's tests: a migrated database, the service over it, and
fakes of the payment service (in memory, and behind a real gRPC server).

``database_url`` runs each test that uses it twice: on a fresh SQLite file and on the
session's MariaDB database (the account tables emptied first, since tests share it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from kit.migrations import migrated_and_emptied
from kit.sql import SessionFactory, create_engine, session_factory
from services.account.peers import PaidSum
from services.account.repository import SqlUnitOfWork
from services.account.repository.dao import ActivityRow, Base
from services.account.service import AccountService
from webook.payment.v1 import payment_pb2, payment_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class FakePayments:
    """In-memory :class:`~services.account.peers.PaymentSums`: the successful payments as
    ``(at_ms, amount_fen)``; ``gate``, when set, holds each call until it is set;
    ``failing`` makes each call raise it."""

    paid: list[tuple[int, int]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    failing: Exception | None = None
    # The windows asked for, in order (by either path).
    calls: list[tuple[int, int]] = field(default_factory=list)

    def sum_of(self, start_ms: int, end_ms: int) -> PaidSum:
        """What ``SumSucceeded`` answers for the window."""
        amounts = [amount for at, amount in self.paid if start_ms <= at < end_ms]
        return PaidSum(amount_fen=sum(amounts), count=len(amounts))

    async def sum_succeeded(self, start_ms: int, end_ms: int) -> PaidSum:
        self.calls.append((start_ms, end_ms))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failing is not None:
            raise self.failing
        return self.sum_of(start_ms, end_ms)


class FakePaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    """``SumSucceeded`` over a :class:`FakePayments`' list; the other methods are refused."""

    def __init__(self, payments: FakePayments) -> None:
        self.payments = payments

    async def SumSucceeded(
        self, request: payment_pb2.SumSucceededRequest, context: Context
    ) -> payment_pb2.SumSucceededResponse:
        self.payments.calls.append((request.start_ms, request.end_ms))
        found = self.payments.sum_of(request.start_ms, request.end_ms)
        return payment_pb2.SumSucceededResponse(amount_fen=found.amount_fen, count=found.count)

    async def Prepay(
        self, request: payment_pb2.PrepayRequest, context: Context
    ) -> payment_pb2.PrepayResponse:
        """Not the account service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the fake")

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.GetPaymentResponse:
        """Not used by the reconciliation: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the fake")

    async def HandleNotification(
        self, request: payment_pb2.HandleNotificationRequest, context: Context
    ) -> payment_pb2.HandleNotificationResponse:
        """Not the account service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the fake")

    async def RunReconciliation(
        self, request: payment_pb2.RunReconciliationRequest, context: Context
    ) -> payment_pb2.RunReconciliationResponse:
        """Not the account service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the fake")


@dataclass
class Clock:
    """A settable wall clock (ms)."""

    now_ms: int

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated account database with empty account tables (SQLite and MariaDB)."""
    return await migrated_and_emptied("account", empty_database_url, Base.metadata)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """Sessions on the test database (its engine disposed after the test)."""
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def payments() -> FakePayments:
    """No payment yet."""
    return FakePayments()


@pytest.fixture
def percent() -> list[int]:
    """The platform share percent the service reads (change ``[0]`` to change it live)."""
    return [10]


@pytest.fixture
def clock() -> Clock:
    """2026-12-07 10:00 UTC."""
    return Clock(1_796_637_600_000)


@pytest.fixture
def service(
    sessions: SessionFactory, payments: FakePayments, percent: list[int], clock: Clock
) -> AccountService:
    """The account service over the test database and the in-memory payments."""
    return AccountService(
        lambda: SqlUnitOfWork(sessions), payments, platform_percent=lambda: percent[0], clock=clock
    )


@pytest.fixture
async def payment_address(payments: FakePayments) -> AsyncIterator[str]:
    """A real gRPC server on a free port serving :class:`FakePaymentServicer`."""
    server = grpc.aio.server()
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(FakePaymentServicer(payments), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def ledger_rows(sessions: SessionFactory, biz_key: str | None = None) -> int:
    """How many ledger rows there are (of ``biz_key``, when given)."""
    stmt = select(func.count()).select_from(ActivityRow)
    if biz_key is not None:
        stmt = stmt.where(ActivityRow.biz_key == biz_key)
    async with sessions() as session:
        return int(await session.scalar(stmt) or 0)
