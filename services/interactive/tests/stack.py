"""What the integration tests' ``interactive_stack`` fixture hands to a test."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.service import InteractiveService

FEED_TIMEOUT_S = 10.0


@dataclass
class InteractiveStack:
    """A service wired to real SQL and Redis, with handles for looking behind its back."""

    service: InteractiveService
    engine: AsyncEngine
    redis: aioredis.Redis
    cache: CountsCache
    local: LocalCounts


async def wait_until_fresh(local: LocalCounts, *, fresh: bool = True) -> None:
    """Wait until the in-process cache's feed is (or is no longer) fresh."""
    deadline = time.monotonic() + FEED_TIMEOUT_S
    while local.feed.fresh is not fresh:
        if time.monotonic() > deadline:
            raise AssertionError(f"the invalidation feed did not become fresh={fresh}")
        await asyncio.sleep(0.01)


async def started_local(redis: aioredis.Redis, **options: int | float) -> LocalCounts:
    """A subscribed :class:`LocalCounts` whose feed is fresh."""
    local = LocalCounts(redis, **options)  # type: ignore[arg-type]
    local.start()
    await wait_until_fresh(local)
    return local
