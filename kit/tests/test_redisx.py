"""Redis clients survive a Redis restart and fail clearly while Redis is down."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from devstack.infra import ManagedProcess
from kit.redisx import create_redis

pytestmark = pytest.mark.integration


async def test_first_command_after_a_restart_succeeds(
    redis_url: str, redis_server: ManagedProcess
) -> None:
    client = create_redis(redis_url)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    try:
        assert await client.ping()
        await script(keys=["kit:redisx:test"])
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        redis_server.start()
        # Pooled connections died with the server; the command is retried on a new one
        # (and the script, lost with the restart, is loaded again).
        assert await script(keys=["kit:redisx:test"]) == 1
    finally:
        if not redis_server.alive():
            redis_server.start()
        await client.aclose(close_connection_pool=True)
