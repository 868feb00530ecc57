"""Likes and collects only on what exists: the real article service behind a real interactive
server (TLS off), plus the adapter's short-lived "published" memory on a stand-in.

Rule under test: ``Like``/``Collect`` need a known ``biz`` (else INVALID_ARGUMENT
``INTERACTIVE_INVALID_BIZ``) and a published article (else NOT_FOUND
``INTERACTIVE_TARGET_NOT_FOUND``); with the article service down they fail closed
(UNAVAILABLE ``INTERACTIVE_TARGET_UNAVAILABLE``); cancelling is always allowed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from clients.article import PublishedArticleTargets, TargetsUnavailable
from clients.tests.articles import ArticleAuthor, stand_in_articles
from devstack.infra import free_port
from kit.config import Mode
from kit.grpcx.client import ServiceClients
from kit.migrations import upgrade_async
from kit.tests.rpc import refusal_of
from services.interactive.__main__ import build_runner
from services.interactive.errors import DOMAIN, Reason
from services.interactive.settings import InteractiveSettings
from webook.interactive.v1 import interactive_pb2
from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceStub

if TYPE_CHECKING:
    from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceAsyncStub

pytestmark = pytest.mark.integration

ARTICLE = "article"
READER = 21


async def _interactive(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str, article_address: str
) -> AsyncIterator[InteractiveServiceAsyncStub]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'interactive.db'}"
    await upgrade_async("interactive", database_url)
    settings = InteractiveSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        # New likes publish ArticleLiked: with no broker there, stopping would wait out the
        # producer's flush timeout.
        kafka_bootstrap=kafka_bootstrap,
        read_consumer_enabled=False,
        peers={"article": article_address},
        # Every like asks the article service: a withdrawal shows at once.
        published_cache_ttl_seconds=0,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield InteractiveServiceStub(channel)
    finally:
        await runner.stop()


@pytest.fixture
async def stub(
    tmp_path: Path,
    redis_url: str,
    redis_client: object,
    kafka_bootstrap: str,
    article_address: str,
) -> AsyncIterator[InteractiveServiceAsyncStub]:
    """An interactive server asking the real article service."""
    async for running in _interactive(tmp_path, redis_url, kafka_bootstrap, article_address):
        yield running


@pytest.fixture
async def orphan_stub(
    tmp_path: Path, redis_url: str, redis_client: object, kafka_bootstrap: str
) -> AsyncIterator[InteractiveServiceAsyncStub]:
    """An interactive server whose article service is down (nothing listens there)."""
    async for running in _interactive(
        tmp_path, redis_url, kafka_bootstrap, f"127.0.0.1:{free_port()}"
    ):
        yield running


refusal = partial(refusal_of, domain=DOMAIN)


def like(biz_id: int, biz: str = ARTICLE) -> interactive_pb2.LikeRequest:
    return interactive_pb2.LikeRequest(biz=biz, biz_id=biz_id, uid=READER)


def collect(biz_id: int, biz: str = ARTICLE) -> interactive_pb2.CollectRequest:
    return interactive_pb2.CollectRequest(biz=biz, biz_id=biz_id, uid=READER, cid=0)


async def counts(stub: InteractiveServiceAsyncStub, biz_id: int) -> tuple[int, int]:
    intr = (await stub.Get(interactive_pb2.GetRequest(biz=ARTICLE, biz_id=biz_id))).intr
    return intr.like_cnt, intr.collect_cnt


async def test_a_published_article_takes_likes_and_collects(
    stub: InteractiveServiceAsyncStub, author: ArticleAuthor
) -> None:
    article_id = await author.publish()
    await stub.Like(like(article_id))
    await stub.Collect(collect(article_id))
    assert await counts(stub, article_id) == (1, 1)


@pytest.mark.parametrize("kind", ["missing", "draft", "withdrawn"])
async def test_what_readers_cannot_open_takes_no_like_nor_collect(
    stub: InteractiveServiceAsyncStub, author: ArticleAuthor, kind: str
) -> None:
    if kind == "missing":
        article_id = 999_999
    elif kind == "draft":
        article_id = await author.draft()
    else:
        article_id = await author.publish()
        await author.withdraw(article_id)
    not_found = (grpc.StatusCode.NOT_FOUND, Reason.TARGET_NOT_FOUND)
    assert await refusal(stub.Like(like(article_id))) == not_found
    assert await refusal(stub.Collect(collect(article_id))) == not_found
    assert await counts(stub, article_id) == (0, 0)


async def test_an_unknown_biz_is_invalid(stub: InteractiveServiceAsyncStub) -> None:
    invalid = (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_BIZ)
    assert await refusal(stub.Like(like(1, biz="nonexistent_biz"))) == invalid
    assert await refusal(stub.Collect(collect(1, biz="nonexistent_biz"))) == invalid
    assert (
        await refusal(
            stub.IncrReadCnt(interactive_pb2.IncrReadCntRequest(biz="nonexistent_biz", biz_id=1))
        )
        == invalid
    )


async def test_a_withdrawn_article_can_still_be_unliked_and_uncollected(
    stub: InteractiveServiceAsyncStub, author: ArticleAuthor
) -> None:
    article_id = await author.publish()
    await stub.Like(like(article_id))
    await stub.Collect(collect(article_id))
    await author.withdraw(article_id)
    await stub.CancelLike(
        interactive_pb2.CancelLikeRequest(biz=ARTICLE, biz_id=article_id, uid=READER)
    )
    await stub.CancelCollect(
        interactive_pb2.CancelCollectRequest(biz=ARTICLE, biz_id=article_id, uid=READER)
    )
    assert await counts(stub, article_id) == (0, 0)
    # Published again, it takes likes again.
    await author.publish(article_id)
    await stub.Like(like(article_id))
    assert await counts(stub, article_id) == (1, 0)


async def test_with_the_article_service_down_likes_fail_closed_and_cancels_work(
    orphan_stub: InteractiveServiceAsyncStub,
) -> None:
    unavailable = (grpc.StatusCode.UNAVAILABLE, Reason.TARGET_UNAVAILABLE)
    assert await refusal(orphan_stub.Like(like(1))) == unavailable
    assert await refusal(orphan_stub.Collect(collect(1))) == unavailable
    await orphan_stub.CancelLike(interactive_pb2.CancelLikeRequest(biz=ARTICLE, biz_id=1, uid=2))
    assert await counts(orphan_stub, 1) == (0, 0)


@dataclass
class Switch:
    """Whether the stand-in article is published, and how often it was asked."""

    published: bool = True
    asked: int = 0

    def __call__(self, _: int) -> bool:
        self.asked += 1
        return self.published


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_published_answers_are_remembered_for_the_ttl_only() -> None:
    switch, clock = Switch(), Clock()
    async with stand_in_articles(switch) as address:
        clients = ServiceClients(registry=None, peers={"article": address})
        targets = PublishedArticleTargets(clients, ttl_s=5.0, clock=clock)
        try:
            assert await targets.exists(ARTICLE, 1)
            assert await targets.exists(ARTICLE, 1)
            assert switch.asked == 1
            # Withdrawn: this replica may take likes until the TTL ends, not after.
            switch.published = False
            clock.now += 4.9
            assert await targets.exists(ARTICLE, 1)
            clock.now += 0.2
            assert not await targets.exists(ARTICLE, 1)
            # "Not published" is never remembered: published again, it is likeable at once.
            switch.published = True
            assert await targets.exists(ARTICLE, 1)
            assert switch.asked == 3
        finally:
            await clients.close()


async def test_an_unreachable_article_service_is_unavailable() -> None:
    clients = ServiceClients(registry=None, peers={"article": f"127.0.0.1:{free_port()}"})
    targets = PublishedArticleTargets(clients, timeout_s=2.0)
    try:
        with pytest.raises(TargetsUnavailable):
            await targets.exists(ARTICLE, 1)
    finally:
        await clients.close()
