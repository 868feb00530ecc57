"""gRPC-level tests: the real process wiring (:func:`build_runner`), consumer included.

They check what clients such as the gateway rely on (status codes, ``ErrorInfo`` reasons,
idempotent likes) and that read events published to ``webook.article.read`` become counts
in the running process.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from kit.config import Mode
from kit.events import EventProducer, ProducerConfig
from kit.migrations import upgrade_async
from kit.tests.rpc import refusal_of
from services.interactive.__main__ import build_runner
from services.interactive.errors import DOMAIN, Reason
from services.interactive.events import ARTICLE_READ_TOPIC, ARTICLE_READS_TOPIC
from services.interactive.settings import InteractiveSettings
from services.interactive.tests.articles import stand_in_authors
from webook.events.v1 import events_pb2
from webook.interactive.v1 import interactive_pb2
from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceStub

if TYPE_CHECKING:
    # Exists only in the .pyi: the type of InteractiveServiceStub on an asyncio channel.
    from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceAsyncStub

pytestmark = pytest.mark.integration

ARTICLE = "article"
AUTHOR = 7


@pytest.fixture
async def stub(
    tmp_path: Path, redis_url: str, redis_client: object, kafka_bootstrap: str
) -> AsyncIterator[InteractiveServiceAsyncStub]:
    """A client of an interactive service served by ``build_runner``, consumer running, every
    article published by user 7 (a stand-in article service)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'interactive.db'}"
    await upgrade_async("interactive", database_url)
    settings = InteractiveSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        read_consumer_group=f"test-{uuid.uuid4().hex[:10]}",
        read_batch_wait_seconds=0.2,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
    )
    async with stand_in_authors(lambda _: AUTHOR) as articles:
        runner = build_runner(settings.model_copy(update={"peers": {"article": articles}}))
        port = await runner.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield InteractiveServiceStub(channel)
        finally:
            await runner.stop()


refusal = partial(refusal_of, domain=DOMAIN)


async def test_like_collect_and_get(stub: InteractiveServiceAsyncStub) -> None:
    for _ in range(2):
        await stub.Like(interactive_pb2.LikeRequest(biz=ARTICLE, biz_id=1, uid=10))
    await stub.Like(interactive_pb2.LikeRequest(biz=ARTICLE, biz_id=1, uid=11))
    await stub.CancelLike(interactive_pb2.CancelLikeRequest(biz=ARTICLE, biz_id=1, uid=11))
    await stub.CancelLike(interactive_pb2.CancelLikeRequest(biz=ARTICLE, biz_id=1, uid=12))
    await stub.Collect(interactive_pb2.CollectRequest(biz=ARTICLE, biz_id=1, uid=10, cid=0))
    await stub.IncrReadCnt(interactive_pb2.IncrReadCntRequest(biz=ARTICLE, biz_id=1))
    intr = (await stub.Get(interactive_pb2.GetRequest(biz=ARTICLE, biz_id=1, uid=10))).intr
    assert (intr.read_cnt, intr.like_cnt, intr.collect_cnt, intr.liked, intr.collected) == (
        1,
        1,
        1,
        True,
        True,
    )
    anonymous = (await stub.Get(interactive_pb2.GetRequest(biz=ARTICLE, biz_id=1))).intr
    assert (anonymous.liked, anonymous.collected) == (False, False)
    await stub.CancelCollect(interactive_pb2.CancelCollectRequest(biz=ARTICLE, biz_id=1, uid=10))
    batch = await stub.GetByIds(interactive_pb2.GetByIdsRequest(biz=ARTICLE, biz_ids=[1, 2]))
    assert {i: (v.like_cnt, v.collect_cnt) for i, v in batch.intrs.items()} == {
        1: (1, 0),
        2: (0, 0),
    }


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (interactive_pb2.LikeRequest(biz="", biz_id=1, uid=1), Reason.INVALID_BIZ),
        (interactive_pb2.LikeRequest(biz=ARTICLE, biz_id=0, uid=1), Reason.INVALID_BIZ_ID),
        (interactive_pb2.LikeRequest(biz=ARTICLE, biz_id=1, uid=0), Reason.INVALID_USER),
    ],
)
async def test_invalid_input_is_refused(
    stub: InteractiveServiceAsyncStub, request_: interactive_pb2.LikeRequest, reason: Reason
) -> None:
    assert await refusal(stub.Like(request_)) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


async def test_collect_into_a_negative_collection_is_refused(
    stub: InteractiveServiceAsyncStub,
) -> None:
    assert await refusal(
        stub.Collect(interactive_pb2.CollectRequest(biz=ARTICLE, biz_id=1, uid=1, cid=-1))
    ) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_COLLECTION)


async def test_too_many_ids_are_refused(stub: InteractiveServiceAsyncStub) -> None:
    assert await refusal(
        stub.GetByIds(interactive_pb2.GetByIdsRequest(biz=ARTICLE, biz_ids=range(1, 102)))
    ) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.TOO_MANY_IDS)


@pytest.mark.parametrize("batched", [True, False], ids=["read batches", "single reads"])
async def test_read_events_become_read_counts(
    stub: InteractiveServiceAsyncStub, kafka_bootstrap: str, batched: bool
) -> None:
    # Ids no other test uses: the topics are shared with every test that reads articles.
    ids = random.sample(range(10**12, 2 * 10**12), 3)
    producer = EventProducer(ProducerConfig(bootstrap=kafka_bootstrap))
    producer.start()
    try:
        for n, article_id in enumerate(ids, start=1):
            reads = [events_pb2.ArticleRead(article_id=article_id) for _ in range(n)]
            if batched:
                producer.publish(ARTICLE_READS_TOPIC, n, events_pb2.ArticleReads(reads=reads))
            for read in () if batched else reads:
                producer.publish(ARTICLE_READ_TOPIC, article_id, read)
        assert await producer.flush(10)
    finally:
        await producer.stop()
    expected = {article_id: n for n, article_id in enumerate(ids, start=1)}
    counts: dict[int, int] = {}
    for _ in range(200):
        batch = await stub.GetByIds(interactive_pb2.GetByIdsRequest(biz=ARTICLE, biz_ids=ids))
        counts = {i: v.read_cnt for i, v in batch.intrs.items()}
        if counts == expected:
            break
        await asyncio.sleep(0.1)
    assert counts == expected
