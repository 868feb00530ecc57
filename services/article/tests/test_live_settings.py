"""The article caches' lifetimes are live settings: the first page's TTL and the reader
views' tiered TTL (lifetimes and popularity thresholds) are read at each write, so a running
service uses new values at once (here changed through a holder, as a live settings change
does); invalid values are refused by the validation ``webookctl config set`` runs.

The path from etcd to the settings in force is covered by kit/liveconfig's tests and the
follow and user services' tests, over the same composition-root wiring.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from kit.config import Mode
from kit.liveconfig import ConfigInvalid, validate_changes
from services.article.__main__ import live_ttl_policy
from services.article.domain import Popularity, PublishedArticle
from services.article.repository.cache import FirstPageCache, first_page_key
from services.article.settings import ArticleSettings

ARTICLE = PublishedArticle(
    id=1, author_id=2, title="t", content="c", abstract="a", ctime_ms=1, utime_ms=1
)


@pytest.mark.integration
async def test_each_first_page_write_uses_the_ttl_in_force(redis_client: aioredis.Redis) -> None:
    in_force = {"ttl": 600}
    cache = FirstPageCache(redis_client, ttl_seconds=lambda: in_force["ttl"])
    await cache.set(2, [])
    assert 60 < await redis_client.ttl(first_page_key(2)) <= 600
    in_force["ttl"] = 5
    await cache.set(2, [])
    assert 0 < await redis_client.ttl(first_page_key(2)) <= 5


def test_the_reader_view_policy_follows_the_settings_in_force() -> None:
    in_force = [ArticleSettings(mode=Mode.TEST)]
    policy = live_ttl_policy(lambda: in_force[0])
    popular = Popularity(followers=20_000)
    assert policy(ARTICLE, Popularity()) == 600
    assert policy(ARTICLE, popular) == 3600
    in_force[0] = in_force[0].model_copy(
        update={"published_cache_ttl_seconds": 30, "popular_author_followers": 50_000}
    )
    assert policy(ARTICLE, Popularity()) == 30
    assert policy(ARTICLE, popular) == 30  # no longer popular enough


def test_the_cache_settings_are_live_and_checked() -> None:
    base = ArticleSettings(mode=Mode.TEST)
    live = {
        "first_page_cache_ttl_seconds": 5,
        "published_cache_ttl_seconds": 5,
        "popular_published_cache_ttl_seconds": 50,
        "popular_author_followers": 1,
        "popular_article_reads": 1,
    }
    assert validate_changes(ArticleSettings, base, {}, live) == live
    for bad in (
        {"published_cache_ttl_seconds": 0},
        {"popular_article_reads": -1},
        {"published_local_cache_entries": 0},  # restart-only
    ):
        with pytest.raises(ConfigInvalid):
            validate_changes(ArticleSettings, base, {}, bad)
