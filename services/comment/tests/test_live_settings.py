"""The first-page cache's TTL is a live setting: read at each write (here from a holder the
test changes, as a live settings change does), so a running cache uses a new value at once;
an invalid value is refused by the validation ``webookctl config set`` runs.

The path from etcd to the settings in force is covered by kit/liveconfig's tests and the
follow and user services' tests, over the same composition-root wiring.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from kit.config import Mode
from kit.liveconfig import ConfigInvalid, validate_changes
from services.comment.repository.cache import FirstPageCache, first_page_key
from services.comment.settings import CommentSettings

pytestmark = pytest.mark.integration


async def test_each_write_uses_the_ttl_in_force(redis_client: aioredis.Redis) -> None:
    in_force = {"ttl": 60}
    cache = FirstPageCache(redis_client, ttl_seconds=lambda: in_force["ttl"])
    key = first_page_key("article", 77)
    await cache.set("article", 77, "newest", [])
    assert 30 < await redis_client.ttl(key) <= 60
    in_force["ttl"] = 5
    await cache.set("article", 77, "newest", [])
    assert 0 < await redis_client.ttl(key) <= 5


def test_the_ttl_is_live_and_checked() -> None:
    base = CommentSettings(mode=Mode.TEST)
    assert validate_changes(CommentSettings, base, {}, {"first_page_cache_ttl_seconds": 5})
    for bad in ({"first_page_cache_ttl_seconds": 0}, {"database_url": "sqlite://"}):
        with pytest.raises(ConfigInvalid):
            validate_changes(CommentSettings, base, {}, bad)
