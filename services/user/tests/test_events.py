"""``UserChanged`` events and the ``ListUsers`` page: unit tests on fakes, and the real
process publishing to the broker and surviving a broker that is not there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from devstack.infra import free_port
from kit.config import Mode
from kit.errors import ErrorKind
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    TopicHandler,
    protobuf_decoder,
)
from kit.grpcx.errors import app_error_from_rpc
from kit.migrations import upgrade_async
from kit.sql import create_engine
from services.user.__main__ import build_runner
from services.user.errors import Reason, UserInvalidArgument
from services.user.events import USER_CHANGED_TOPIC
from services.user.repository.dao import UserOutboxRow
from services.user.service import UserService
from services.user.settings import UserSettings
from services.user.tests.fakes import FakeUnitOfWork, InMemoryUserStore, RecordingUserEvents
from webook.events.v1 import events_pb2
from webook.user.v1 import user_pb2
from webook.user.v1.user_pb2_grpc import UserServiceStub

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
PASSWORD = "hello#123"


def _service(store: InMemoryUserStore, events: RecordingUserEvents) -> UserService:
    return UserService(lambda: FakeUnitOfWork(store, events), bcrypt_cost=4, clock=lambda: NOW)


async def test_signup_edit_and_first_logins_report_the_user() -> None:
    store, events = InMemoryUserStore(), RecordingUserEvents()
    service = _service(store, events)
    signed_up = await service.signup("ann@example.com", PASSWORD)
    await service.update_non_sensitive_info(
        signed_up.id, nickname="安妮", birthday="", about_me="写微服务"
    )
    by_phone, _ = await service.find_or_create_by_phone("13800000000")
    await service.find_or_create_by_phone("13800000000")  # found, not created: no event
    assert [(u.id, u.nickname, u.about_me) for u in events.changed] == [
        (signed_up.id, "", ""),
        (signed_up.id, "安妮", "写微服务"),
        (by_phone.id, "", ""),
    ]


async def test_refused_writes_report_nothing() -> None:
    store, events = InMemoryUserStore(), RecordingUserEvents()
    service = _service(store, events)
    user = await service.signup("ann@example.com", PASSWORD)
    events.changed.clear()
    with pytest.raises(UserInvalidArgument):
        await service.update_non_sensitive_info(
            user.id, nickname="x" * 500, birthday="", about_me=""
        )
    with pytest.raises(Exception, match="already registered"):
        await service.signup("ann@example.com", PASSWORD)
    assert events.changed == []


async def test_list_users_pages_in_id_order() -> None:
    store = InMemoryUserStore()
    service = _service(store, RecordingUserEvents())
    for i in range(5):
        await service.signup(f"u{i}@example.com", PASSWORD)
    first = await service.list_users(0, 2)
    second = await service.list_users(first[-1].id, 2)
    last = await service.list_users(second[-1].id, 2)
    assert [u.id for u in (*first, *second, *last)] == [1, 2, 3, 4, 5]
    assert await service.list_users(5, 2) == []


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_list_users_refuses_bad_limits(limit: int) -> None:
    service = _service(InMemoryUserStore(), RecordingUserEvents())
    with pytest.raises(UserInvalidArgument) as caught:
        await service.list_users(0, limit)
    assert (caught.value.kind, caught.value.reason) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_PAGE,
    )


def _settings(tmp_path: Path, redis_url: str, kafka_bootstrap: str) -> UserSettings:
    return UserSettings(
        mode=Mode.TEST,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'user.db'}",
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        grpc_port=0,
        metrics_port=-1,
        bcrypt_cost=4,
        shutdown_grace=1.0,
        outbox_poll_interval_seconds=0.1,
    )


@pytest.mark.integration
async def test_changes_reach_the_topic_and_list_users_pages(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str
) -> None:
    settings = _settings(tmp_path, redis_url, kafka_bootstrap)
    await upgrade_async("user", settings.database_url)
    runner = build_runner(settings)
    port = await runner.start()
    marker = f"about-{random.randrange(10**9)}"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = UserServiceStub(channel)
            ids = []
            for i in range(3):
                answer = await stub.Signup(
                    user_pb2.SignupRequest(email=f"u{i}@example.com", password=PASSWORD)
                )
                ids.append(answer.user.id)
            await stub.UpdateNonSensitiveInfo(
                user_pb2.UpdateNonSensitiveInfoRequest(id=ids[0], nickname="安妮", about_me=marker)
            )
            page = await stub.ListUsers(user_pb2.ListUsersRequest(after_id=0, limit=2))
            rest = await stub.ListUsers(
                user_pb2.ListUsersRequest(after_id=page.users[-1].id, limit=2)
            )
            assert [u.id for u in (*page.users, *rest.users)] == ids
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListUsers(user_pb2.ListUsersRequest(limit=0))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert app_error_from_rpc(caught.value).reason == Reason.INVALID_PAGE
    finally:
        await runner.stop()

    seen: list[events_pb2.UserChanged] = []

    async def collect(batch: Sequence[ConsumedEvent[events_pb2.UserChanged]]) -> None:
        seen.extend(e.payload for e in batch if e.payload.user_id == ids[0])

    consumer = BatchConsumer(
        ConsumerConfig(
            bootstrap=kafka_bootstrap,
            group_id=f"test-user-changed-{marker}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_wait_s=0.2,
        ),
        {USER_CHANGED_TOPIC: TopicHandler(protobuf_decoder(events_pb2.UserChanged), collect)},
    )
    consumer.start()
    try:
        for _ in range(150):
            if any(e.about_me == marker for e in seen):
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert [(e.nickname, e.about_me) for e in seen][-2:] == [("", ""), ("安妮", marker)]


@pytest.mark.integration
async def test_signup_and_edit_work_while_the_broker_is_down(
    tmp_path: Path, redis_url: str
) -> None:
    # Nothing listens on this port: the events wait in the outbox for the broker.
    settings = _settings(tmp_path, redis_url, f"127.0.0.1:{free_port()}")
    await upgrade_async("user", settings.database_url)
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = UserServiceStub(channel)
            answer = await stub.Signup(
                user_pb2.SignupRequest(email="down@example.com", password=PASSWORD), timeout=5
            )
            edited = await stub.UpdateNonSensitiveInfo(
                user_pb2.UpdateNonSensitiveInfoRequest(id=answer.user.id, nickname="n"),
                timeout=5,
            )
            assert edited.user.nickname == "n"
    finally:
        await runner.stop()
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(select(UserOutboxRow.event_key, UserOutboxRow.sent_ms))
            ).all()
    finally:
        await engine.dispose()
    assert rows == [(str(answer.user.id), None), (str(answer.user.id), None)]
