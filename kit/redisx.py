"""Redis client construction.

A ``BlockingConnectionPool`` (redis-py's default pool raises "Too many connections" under
load) and short socket timeouts, so that a Redis outage turns into fast errors the caller
can fall back from instead of stalled requests.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, max_connections: int = 64, timeout: float = 0.5) -> aioredis.Redis:
    """A Redis client for ``url`` with a bounded, blocking pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)
