"""The global daily budget on a real Redis: atomic under concurrency, one counter per day."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devstack.infra import free_port
from kit.redisx import create_redis
from services.sms.repository.budget import RedisDailyBudget, daily_key
from services.sms.sms_service import BudgetUnavailable

pytestmark = pytest.mark.integration

DAY = "2026-12-06"


@pytest.fixture
async def client(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    # redis_client flushed the database; the budget uses its own pooled client.
    pooled = create_redis(redis_url, timeout=5.0)  # concurrency under load, not timeouts
    yield pooled
    await pooled.aclose(close_connection_pool=True)


async def test_the_take_past_the_limit_is_refused_and_not_counted(
    client: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    budget = RedisDailyBudget(client, limit=3)
    assert await budget.take(DAY, 2) == (True, 2)
    assert await budget.take(DAY, 2) == (False, 2)
    assert await budget.take(DAY, 1) == (True, 3)
    assert await budget.take(DAY, 1) == (False, 3)
    assert await redis_client.get(daily_key(DAY)) == b"3"
    assert 0 < await redis_client.pttl(daily_key(DAY)) <= 2 * 86_400_000


async def test_concurrent_takes_never_pass_the_limit(client: aioredis.Redis) -> None:
    budget = RedisDailyBudget(client, limit=10)
    answers = await asyncio.gather(*(budget.take(DAY, 1) for _ in range(50)))
    assert sum(taken for taken, _ in answers) == 10
    assert max(used for _, used in answers) == 10


async def test_each_day_has_its_own_count_and_give_back_frees_room(
    client: aioredis.Redis,
) -> None:
    budget = RedisDailyBudget(client, limit=1)
    assert await budget.take(DAY, 1) == (True, 1)
    assert await budget.take("2026-12-07", 1) == (True, 1)
    await budget.give_back(DAY, 1)
    assert await budget.take(DAY, 1) == (True, 1)
    # Never below zero.
    await budget.give_back("2026-12-08", 5)
    assert await budget.take("2026-12-08", 2) == (False, 0)


async def test_redis_down_is_budget_unavailable() -> None:
    down = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        with pytest.raises(BudgetUnavailable):
            await RedisDailyBudget(down, limit=1).take(DAY, 1)
    finally:
        await down.aclose(close_connection_pool=True)
