"""Integration tests of the user service on real SQL (SQLite and MariaDB) and real Redis."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Connection

from devstack.infra import ManagedProcess
from kit.errors import AppError
from kit.migrations import schema_drift
from services.user.domain import User
from services.user.errors import Reason
from services.user.repository.cache import CACHE_NAME, profile_key
from services.user.repository.dao import Base
from services.user.tests.stack import UserStack

PASSWORD = "hello#123"


def cache_requests(result: str) -> float:
    """Current value of ``webook_cache_requests_total`` for the profile cache."""
    value = REGISTRY.get_sample_value(
        "webook_cache_requests_total", {"cache": CACHE_NAME, "result": result}
    )
    return value or 0.0


async def test_signup_login_profile_edit_round_trip(user_stack: UserStack) -> None:
    service = user_stack.service
    created = await service.signup(" Zoë@Example.com ", PASSWORD)
    assert created.email == "zoë@example.com"

    assert await service.login("ZOË@example.com", PASSWORD) == created
    assert await service.profile(created.id) == created

    edited = await service.update_non_sensitive_info(
        created.id, nickname="小明 😀", birthday="1990-05-01", about_me="line 1\nline 2"
    )
    assert (edited.nickname, edited.birthday, edited.about_me) == (
        "小明 😀",
        date(1990, 5, 1),
        "line 1\nline 2",
    )
    assert await service.profile(created.id) == edited
    assert await service.get_by_ids([created.id, created.id + 1000]) == {created.id: edited}

    cleared = await service.update_non_sensitive_info(
        created.id, nickname="", birthday="", about_me=""
    )
    assert cleared.birthday is None
    assert await service.profile(created.id) == cleared


async def test_long_unicode_fields_fit_the_columns(user_stack: UserStack) -> None:
    user, _ = await user_stack.service.find_or_create_by_phone("13800000000")
    nickname, about = "😀" * 64, "😀" * 1024  # 4-byte characters at the character limits
    await user_stack.service.update_non_sensitive_info(
        user.id, nickname=nickname, birthday="", about_me=about
    )
    await user_stack.redis.flushdb()
    profile = await user_stack.service.profile(user.id)
    assert (profile.nickname, profile.about_me) == (nickname, about)


async def test_duplicate_email_is_refused(user_stack: UserStack) -> None:
    await user_stack.service.signup("taken@example.com", PASSWORD)
    with pytest.raises(AppError) as caught:
        await user_stack.service.signup("Taken@Example.com", "other#456")
    assert caught.value.reason == Reason.EMAIL_TAKEN
    with pytest.raises(AppError):
        await user_stack.service.login("taken@example.com", "other#456")


async def test_concurrent_signups_with_one_email_create_one_user(user_stack: UserStack) -> None:
    results = await asyncio.gather(
        *(user_stack.service.signup("race@example.com", PASSWORD) for _ in range(4)),
        return_exceptions=True,
    )
    users = [r for r in results if isinstance(r, User)]
    refused = [r for r in results if isinstance(r, AppError)]
    assert len(users) == 1
    assert len(refused) == 3
    assert {e.reason for e in refused} == {Reason.EMAIL_TAKEN}
    assert await user_stack.service.login("race@example.com", PASSWORD) == users[0]


async def test_concurrent_find_or_create_by_phone_returns_one_user(user_stack: UserStack) -> None:
    results = await asyncio.gather(
        *(user_stack.service.find_or_create_by_phone("13912345678") for _ in range(5))
    )
    assert len({user.id for user, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, False, True]


async def test_concurrent_find_or_create_by_wechat_returns_one_user(
    user_stack: UserStack,
) -> None:
    results = await asyncio.gather(
        *(user_stack.service.find_or_create_by_wechat("oRace", "uRace") for _ in range(3))
    )
    assert len({user.id for user, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1


async def test_identities_compare_exactly(user_stack: UserStack) -> None:
    # WeChat open ids are case-sensitive; a case-insensitive collation would merge these.
    lower, _ = await user_stack.service.find_or_create_by_wechat("oabc", "")
    upper, created = await user_stack.service.find_or_create_by_wechat("oABC", "")
    assert created
    assert lower.id != upper.id


async def test_profile_is_served_from_cache_after_first_read(user_stack: UserStack) -> None:
    user, _ = await user_stack.service.find_or_create_by_phone("13700000000")
    misses, hits = cache_requests("miss"), cache_requests("hit")

    await user_stack.service.profile(user.id)
    assert await user_stack.redis.ttl(profile_key(user.id)) in range(890, 901)
    # Change the row behind the cache's back: a cache hit still shows the old value.
    async with user_stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET nickname = 'behind' WHERE id = :id"), {"id": user.id}
        )
    assert (await user_stack.service.profile(user.id)).nickname == ""
    assert cache_requests("miss") == misses + 1
    assert cache_requests("hit") == hits + 1


async def test_edit_invalidates_the_cached_profile(user_stack: UserStack) -> None:
    user, _ = await user_stack.service.find_or_create_by_phone("13700000001")
    await user_stack.service.profile(user.id)
    assert await user_stack.redis.exists(profile_key(user.id))

    await user_stack.service.update_non_sensitive_info(
        user.id, nickname="new", birthday="", about_me=""
    )
    assert not await user_stack.redis.exists(profile_key(user.id))
    assert (await user_stack.service.profile(user.id)).nickname == "new"


async def test_get_by_ids_fills_and_uses_the_cache(user_stack: UserStack) -> None:
    ids = [
        (await user_stack.service.find_or_create_by_phone(f"1360000000{i}"))[0].id for i in range(3)
    ]
    first = await user_stack.service.get_by_ids(ids)
    assert set(first) == set(ids)
    hits = cache_requests("hit")
    assert await user_stack.service.get_by_ids(ids) == first
    assert cache_requests("hit") == hits + 3


async def test_undecodable_cache_entry_falls_back_to_the_database(
    user_stack: UserStack,
) -> None:
    user, _ = await user_stack.service.find_or_create_by_phone("13700000002")
    await user_stack.redis.set(profile_key(user.id), b"\xff not json")
    assert await user_stack.service.profile(user.id) == user


async def test_profile_and_edit_work_while_redis_is_down(
    user_stack: UserStack, redis_server: ManagedProcess
) -> None:
    user, _ = await user_stack.service.find_or_create_by_phone("13700000003")
    await user_stack.service.profile(user.id)  # cached before the outage
    errors = cache_requests("error")
    await asyncio.to_thread(redis_server.stop)
    try:
        assert await user_stack.service.profile(user.id) == user
        edited = await user_stack.service.update_non_sensitive_info(
            user.id, nickname="offline", birthday="2000-01-01", about_me=""
        )
        assert await user_stack.service.profile(user.id) == edited
        assert await user_stack.service.get_by_ids([user.id]) == {user.id: edited}
        assert cache_requests("error") >= errors + 3
    finally:
        await asyncio.to_thread(redis_server.start)
    # Redis came back empty; the cache refills from the database.
    assert await user_stack.service.profile(user.id) == edited
    assert await user_stack.redis.exists(profile_key(user.id))


async def test_migrations_match_the_models(database_url: str, user_stack: UserStack) -> None:
    def diff(connection: Connection) -> list[object]:
        return schema_drift(connection, Base.metadata, "user")

    async with user_stack.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
