"""``UserChanged`` events are written to ``user_outbox`` in the transaction of the change
(real SQLite and MariaDB): an event exists if and only if its change committed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kit.errors import AppError
from services.user.events import USER_CHANGED_TOPIC
from services.user.repository.dao import UserOutboxRow
from services.user.tests.stack import UserStack
from webook.events.v1 import events_pb2

PASSWORD = "hello#123"


async def outbox(stack: UserStack) -> list[tuple[str, events_pb2.UserChanged]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            select(UserOutboxRow.topic, UserOutboxRow.event_key, UserOutboxRow.payload).order_by(
                UserOutboxRow.id
            )
        )
        found = []
        for topic, key, payload in rows:
            assert topic == USER_CHANGED_TOPIC
            found.append((key, events_pb2.UserChanged.FromString(payload)))
        return found


async def test_signup_edit_and_first_login_record_their_events(user_stack: UserStack) -> None:
    service = user_stack.service
    user = await service.signup("ann@example.com", PASSWORD)
    await service.update_non_sensitive_info(user.id, nickname="Ann", birthday="", about_me="hi")
    by_phone, _ = await service.find_or_create_by_phone("13800000000")
    await service.find_or_create_by_phone("13800000000")  # found: nothing changed
    recorded = [(key, e.user_id, e.nickname, e.about_me) for key, e in await outbox(user_stack)]
    assert recorded == [
        (str(user.id), user.id, "", ""),
        (str(user.id), user.id, "Ann", "hi"),
        (str(by_phone.id), by_phone.id, "", ""),
    ]


async def test_a_change_that_does_not_commit_records_no_event(user_stack: UserStack) -> None:
    service = user_stack.service
    user = await service.signup("ann@example.com", PASSWORD)
    before = await outbox(user_stack)
    with pytest.raises(AppError):  # the unique email is checked by the database
        await service.signup("ann@example.com", PASSWORD)
    with pytest.raises(AppError):
        await service.update_non_sensitive_info(
            user.id + 1000, nickname="x", birthday="", about_me=""
        )
    assert await outbox(user_stack) == before
