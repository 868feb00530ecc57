"""Per-account login throttling on a real Redis, with a test clock (no waiting on wall time).

The service runs on the in-memory user store; the throttle is the production
:class:`RedisLoginThrottle`, so the Lua scripts, key expiry and atomicity are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from devstack.infra import free_port
from kit.errors import AppError, ErrorKind
from kit.redisx import create_redis
from services.user.domain import LoginThrottleRules
from services.user.errors import Reason, UserLoginThrottled, UserUnauthenticated
from services.user.metrics import UserMetrics
from services.user.repository.throttle import RedisLoginThrottle
from services.user.service import UserService
from services.user.tests.fakes import FakeUnitOfWork, InMemoryUserStore

pytestmark = pytest.mark.integration

PASSWORD = "hello#123"
WRONG = "wrong#123"
EMAIL = "ann@example.com"
RULES = LoginThrottleRules(max_failures=3, window_s=900, lock_s=60, max_lock_s=240)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def client(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    # redis_client flushed the database; the throttle uses its own pooled client.
    pooled = create_redis(redis_url, timeout=5.0)  # concurrency under load, not timeouts
    yield pooled
    await pooled.aclose(close_connection_pool=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> UserMetrics:
    return UserMetrics(CollectorRegistry())


@pytest.fixture
async def service(client: aioredis.Redis, clock: Clock, metrics: UserMetrics) -> UserService:
    store = InMemoryUserStore()
    service = UserService(
        lambda: FakeUnitOfWork(store),
        bcrypt_cost=4,
        clock=clock,
        throttle=RedisLoginThrottle(client, RULES),
        metrics=metrics,
    )
    await service.signup(EMAIL, PASSWORD)
    return service


async def fail(service: UserService, email: str = EMAIL, times: int = 1) -> None:
    """``times`` wrong passwords, each refused as wrong credentials."""
    for _ in range(times):
        with pytest.raises(UserUnauthenticated):
            await service.login(email, WRONG)


async def locked(service: UserService, email: str = EMAIL, password: str = PASSWORD) -> AppError:
    """The refusal of a login on a locked account."""
    with pytest.raises(UserLoginThrottled) as refused:
        await service.login(email, password)
    error = refused.value
    assert (error.kind, error.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.LOGIN_THROTTLED)
    return error


async def test_failures_lock_even_the_right_password_until_the_lock_ends(
    service: UserService, clock: Clock, metrics: UserMetrics
) -> None:
    await fail(service, times=3)

    refusal = await locked(service)
    assert refusal.metadata == {"retry_after_s": "60"}
    assert refusal.message == "too many failed logins for this account; try again in 1 minute"
    clock.advance(59)
    assert (await locked(service)).metadata == {"retry_after_s": "1"}

    clock.advance(1)
    assert (await service.login(EMAIL, PASSWORD)).email == EMAIL
    counted = metrics.login_throttle_total
    assert (counted.labels("locked")._value.get(), counted.labels("refused")._value.get()) == (1, 2)


async def test_each_further_lock_doubles_up_to_the_maximum(
    service: UserService, clock: Clock
) -> None:
    for lock_s in (60, 120, 240, 240):
        await fail(service, times=3)
        assert (await locked(service)).metadata == {"retry_after_s": str(lock_s)}
        clock.advance(lock_s)


async def test_a_successful_login_resets_failures_and_locks(
    service: UserService, clock: Clock
) -> None:
    await fail(service, times=3)
    clock.advance(60)
    await service.login(EMAIL, PASSWORD)
    # Two failures, a success: the count starts again.
    await fail(service, times=2)
    await service.login(EMAIL, PASSWORD)
    await fail(service, times=2)
    await service.login(EMAIL, PASSWORD)
    # The next lock is the first again, not a doubled one.
    await fail(service, times=3)
    assert (await locked(service)).metadata == {"retry_after_s": "60"}


async def test_failures_outside_the_window_do_not_add_up(
    service: UserService, clock: Clock
) -> None:
    await fail(service, times=2)
    clock.advance(900)
    await fail(service, times=2)
    await service.login(EMAIL, PASSWORD)


async def test_unknown_accounts_are_throttled_the_same_way(
    service: UserService, client: aioredis.Redis
) -> None:
    await fail(service, times=3)
    await fail(service, email="nobody@example.com", times=3)

    known = await locked(service)
    unknown = await locked(service, email="nobody@example.com")

    assert (type(unknown), unknown.message, unknown.metadata) == (
        type(known),
        known.message,
        known.metadata,
    )
    # The addresses are never written to Redis, only digests of them.
    keys = [key if isinstance(key, bytes) else key.encode() for key in await client.keys()]
    assert not [key for key in keys if b"example.com" in key]
    assert len(await client.keys("user:login:*")) == 2


async def test_every_spelling_of_an_email_is_one_account(service: UserService) -> None:
    await fail(service, email="ANN@example.com")
    await fail(service, email=" Ann@Example.COM ")
    await fail(service)
    await locked(service, email="Ann@Example.com")


async def test_concurrent_guesses_cannot_exceed_the_limit(service: UserService) -> None:
    results = await asyncio.gather(
        *(service.login(EMAIL, f"guess#{i:03d}") for i in range(30)), return_exceptions=True
    )
    checked = [r for r in results if isinstance(r, UserUnauthenticated)]
    throttled = [r for r in results if isinstance(r, UserLoginThrottled)]
    assert len(checked) <= RULES.max_failures
    assert len(checked) + len(throttled) == 30
    await locked(service)


async def test_a_redis_outage_does_not_lock_everyone_out(clock: Clock) -> None:
    metrics = UserMetrics(CollectorRegistry())
    down = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    store = InMemoryUserStore()
    service = UserService(
        lambda: FakeUnitOfWork(store),
        bcrypt_cost=4,
        clock=clock,
        throttle=RedisLoginThrottle(down, RULES),
        metrics=metrics,
    )
    try:
        await service.signup(EMAIL, PASSWORD)
        await fail(service, times=4)
        assert (await service.login(EMAIL, PASSWORD)).email == EMAIL
    finally:
        await down.aclose(close_connection_pool=True)
    assert metrics.login_throttle_total.labels("unchecked")._value.get() == 10
