"""Redis client construction.

A ``BlockingConnectionPool`` (redis-py's default pool raises "Too many connections" under
load) and short socket timeouts, so that a Redis outage turns into fast errors the caller
can fall back from instead of stalled requests.

A command that fails with a *connection* error is retried once on a fresh connection: after
Redis restarts, every pooled connection is dead, and without the retry the first command
on each would fail although Redis is back. Timeouts are not retried (an outage must stay
fast), and the retry is immediate. The cost: a command whose connection broke after Redis
executed it but before the answer arrived runs twice; every script of ours either
tolerates that or refuses the repeat (e.g. a second code send within the resend interval).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def create_redis(url: str, *, max_connections: int = 64, timeout: float = 0.5) -> aioredis.Redis:
    """A Redis client for ``url`` with a bounded, blocking pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), retries=1),
        retry_on_error=[RedisConnectionError],
    )
    return aioredis.Redis(connection_pool=pool)
