"""The counts cache's TTL is a live setting: read at each write (here from a holder the test
changes, as a live settings change does), so a running cache uses a new value at once; an
invalid value is refused by the validation ``webookctl config set`` runs.

The path from etcd to the settings in force is covered by kit/liveconfig's tests and the
follow and user services' tests, over the same composition-root wiring.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from kit.config import Mode
from kit.liveconfig import ConfigInvalid, validate_changes
from services.interactive.domain import Counts, Flags
from services.interactive.repository.cache import CountsCache, counts_key, flags_key
from services.interactive.settings import InteractiveSettings

pytestmark = pytest.mark.integration


async def test_each_write_uses_the_ttl_in_force(redis_client: aioredis.Redis) -> None:
    in_force = {"ttl": 600}
    cache = CountsCache(redis_client, ttl_seconds=lambda: in_force["ttl"])
    await cache.set_many("article", {5: Counts(read_cnt=3)})
    await cache.fill_flags("article", 5, 9, Flags(liked=True))
    assert 60 < await redis_client.ttl(counts_key("article", 5)) <= 600
    assert 60 < await redis_client.ttl(flags_key("article", 5, 9)) <= 600
    in_force["ttl"] = 5
    await cache.set_many("article", {5: Counts(read_cnt=4)})
    await cache.fill_flags("article", 5, 10, Flags(liked=True))
    assert 0 < await redis_client.ttl(counts_key("article", 5)) <= 5
    assert 0 < await redis_client.ttl(flags_key("article", 5, 10)) <= 5


def test_the_ttl_is_live_and_checked() -> None:
    base = InteractiveSettings(mode=Mode.TEST)
    assert validate_changes(InteractiveSettings, base, {}, {"counts_cache_ttl_seconds": 5})
    for bad in ({"counts_cache_ttl_seconds": 0}, {"local_cache_enabled": False}):
        with pytest.raises(ConfigInvalid):
            validate_changes(InteractiveSettings, base, {}, bad)
