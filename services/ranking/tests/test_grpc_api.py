"""gRPC-level tests of the ranking service with real Redis and real peers.

The article and interactive services run as real processes (their fixtures publish articles
and count likes for real); the ranking replicas are the real process wiring
(``build_runner``). Covered: the job's order, batching and paging, likes changing the order
on the next run, fencing tokens (in the request or in metadata), replicas picking up
another's result from Redis, a failing peer leaving the ranking in force, and expiry with
Redis up (empty) and down (stale, counted).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from clients.tests.articles import ArticleAuthor
from devstack.infra import free_port
from kit.cache.tests.outage import eventually, own_redis, url_of
from kit.grpcx.fencing import FENCING_TOKEN_METADATA, fencing_metadata
from kit.tests.rpc import refusal_of
from services.ranking.errors import DOMAIN, Reason
from services.ranking.store import FENCING_KEY, RANKING_KEY
from services.ranking.tests.conftest import ServeRanking
from webook.interactive.v1 import interactive_pb2
from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceStub
from webook.ranking.v1 import ranking_pb2

if TYPE_CHECKING:
    from webook.ranking.v1.ranking_pb2_grpc import RankingServiceAsyncStub

pytestmark = pytest.mark.integration


async def like(interactive_address: str, article_id: int, count: int, *, first_uid: int) -> None:
    """``count`` distinct users like ``article_id``."""
    async with grpc.aio.insecure_channel(interactive_address) as channel:
        stub = InteractiveServiceStub(channel)
        for uid in range(first_uid, first_uid + count):
            await stub.Like(interactive_pb2.LikeRequest(biz="article", biz_id=article_id, uid=uid))


async def ranked_ids(stub: RankingServiceAsyncStub, offset: int = 0, limit: int = 100) -> list[int]:
    """The ids of a page of the ranking."""
    reply = await stub.TopArticles(ranking_pb2.TopArticlesRequest(offset=offset, limit=limit))
    return [a.id for a in reply.articles]


refusal = partial(refusal_of, domain=DOMAIN)


def stale_serves() -> float:
    """The process's ``webook_ranking_stale_serves_total``."""
    return REGISTRY.get_sample_value("webook_ranking_stale_serves_total") or 0.0


def run(token: int) -> ranking_pb2.RunRankingRequest:
    """A job run under ``token``."""
    return ranking_pb2.RunRankingRequest(fencing_token=token)


@pytest.fixture
def peers(article_address: str, interactive_address: str) -> dict[str, str]:
    """The real article and interactive services, as ranking's static peers."""
    return {"article": article_address, "interactive": interactive_address}


async def test_the_job_ranks_by_likes_in_batches_and_likes_change_the_next_run(
    serve_ranking: ServeRanking,
    peers: dict[str, str],
    interactive_address: str,
    author: ArticleAuthor,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> None:
    ids = [await author.publish() for _ in range(5)]
    for article_id, likes in zip(ids, (2, 5, 3, 0, 4), strict=True):
        await like(interactive_address, article_id, likes, first_uid=1000)
    # Batches of 2 over 5 articles (and whatever earlier tests of the module published).
    stub = await serve_ranking(redis_url=redis_url, peers=peers, batch_size=2, top_k=4)

    reply = await stub.RunRanking(run(1))
    assert reply.scored >= 5
    assert reply.ranked == 4
    assert reply.computed_at_ms > 0
    assert await ranked_ids(stub) == [ids[1], ids[4], ids[2], ids[0]]
    assert await ranked_ids(stub, offset=1, limit=2) == [ids[4], ids[2]]
    page = await stub.TopArticles(ranking_pb2.TopArticlesRequest(offset=0, limit=1))
    assert page.total == 4
    assert not page.stale
    assert page.articles[0].like_cnt == 5
    assert page.articles[0].score > 0
    assert await redis_client.exists(RANKING_KEY) == 1
    assert 0 < await redis_client.pttl(RANKING_KEY) <= 900_000

    await like(interactive_address, ids[3], 9, first_uid=2000)
    await stub.RunRanking(run(2))
    assert (await ranked_ids(stub))[0] == ids[3]


async def test_a_stale_fencing_token_is_refused_and_an_equal_one_accepted(
    serve_ranking: ServeRanking, peers: dict[str, str], redis_url: str, redis_client: aioredis.Redis
) -> None:
    stub = await serve_ranking(redis_url=redis_url, peers=peers)
    await stub.RunRanking(run(7))
    code, reason = await refusal(stub.RunRanking(run(6)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, Reason.STALE_FENCING_TOKEN)
    assert await redis_client.get(FENCING_KEY) == b"7"
    await stub.RunRanking(run(7))
    await stub.RunRanking(run(8))
    assert await redis_client.get(FENCING_KEY) == b"8"
    for out_of_range in (0, 2**53):  # Redis compares tokens as doubles: exact below 2**53
        code, reason = await refusal(stub.RunRanking(run(out_of_range)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)


async def test_the_token_may_come_in_metadata_as_the_scheduler_sends_it(
    serve_ranking: ServeRanking, peers: dict[str, str], redis_url: str, redis_client: aioredis.Redis
) -> None:
    stub = await serve_ranking(redis_url=redis_url, peers=peers)
    empty = ranking_pb2.RunRankingRequest()
    await stub.RunRanking(empty, metadata=fencing_metadata(9, "ranking.refresh"))
    assert await redis_client.get(FENCING_KEY) == b"9"
    code, reason = await refusal(stub.RunRanking(empty, metadata=fencing_metadata(8, "r")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, Reason.STALE_FENCING_TOKEN)
    # Both ways at once: accepted when they agree, refused when they differ.
    await stub.RunRanking(run(10), metadata=fencing_metadata(10, "r"))
    assert await redis_client.get(FENCING_KEY) == b"10"
    code, reason = await refusal(stub.RunRanking(run(12), metadata=fencing_metadata(11, "r")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    for malformed in ("abc", "0", "-3", "1" * 20, "12 "):
        code, reason = await refusal(
            stub.RunRanking(empty, metadata=((FENCING_TOKEN_METADATA, malformed),))
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    twice = ((FENCING_TOKEN_METADATA, "13"), (FENCING_TOKEN_METADATA, "14"))
    code, reason = await refusal(stub.RunRanking(empty, metadata=twice))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    # Neither way: no token, refused as before.
    code, reason = await refusal(stub.RunRanking(empty))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    assert await redis_client.get(FENCING_KEY) == b"10"


async def test_pages_out_of_bounds_are_refused(
    serve_ranking: ServeRanking, redis_url: str, redis_client: aioredis.Redis
) -> None:
    stub = await serve_ranking(redis_url=redis_url)
    for offset, limit in ((-1, 10), (0, 101), (0, -1)):
        code, reason = await refusal(
            stub.TopArticles(ranking_pb2.TopArticlesRequest(offset=offset, limit=limit))
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE)
    empty = await stub.TopArticles(ranking_pb2.TopArticlesRequest())
    assert list(empty.articles) == []
    assert empty.computed_at_ms == 0
    assert empty.total == 0


async def test_another_replica_serves_the_result_from_redis(
    serve_ranking: ServeRanking,
    peers: dict[str, str],
    interactive_address: str,
    author: ArticleAuthor,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> None:
    article_id = await author.publish()
    await like(interactive_address, article_id, 50, first_uid=3000)
    runner = await serve_ranking(redis_url=redis_url, peers=peers)
    other = await serve_ranking(redis_url=redis_url, refresh_interval_seconds=0.05)
    assert await ranked_ids(other) == []
    await runner.RunRanking(run(1))
    expected = await ranked_ids(runner)
    assert expected[0] == article_id

    async def replicated() -> bool:
        return await ranked_ids(other) == expected

    await eventually(replicated, "the other replica serves the new ranking")


async def test_a_failing_peer_fails_the_run_and_keeps_the_ranking_in_force(
    serve_ranking: ServeRanking,
    peers: dict[str, str],
    author: ArticleAuthor,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> None:
    await author.publish()
    stub = await serve_ranking(redis_url=redis_url, peers=peers)
    await stub.RunRanking(run(1))
    before = await stub.TopArticles(ranking_pb2.TopArticlesRequest())
    broken = await serve_ranking(
        redis_url=redis_url,
        peers={**peers, "interactive": f"127.0.0.1:{free_port()}"},
        peer_timeout_seconds=1.0,
    )
    code, reason = await refusal(broken.RunRanking(run(2)))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, Reason.JOB_FAILED)
    assert await stub.TopArticles(ranking_pb2.TopArticlesRequest()) == before
    assert await redis_client.get(RANKING_KEY) is not None


async def test_an_expired_ranking_lapses_while_redis_answers(
    serve_ranking: ServeRanking, peers: dict[str, str], author: ArticleAuthor, tmp_path: Path
) -> None:
    await author.publish()
    with own_redis(tmp_path) as redis_proc:
        stub = await serve_ranking(
            redis_url=url_of(redis_proc), peers=peers, ttl_seconds=1, refresh_interval_seconds=0.05
        )
        await stub.RunRanking(run(1))
        assert await ranked_ids(stub)

        async def lapsed() -> bool:
            reply = await stub.TopArticles(ranking_pb2.TopArticlesRequest())
            return not reply.articles and not reply.stale

        await eventually(lapsed, "the ranking lapses with Redis up")


async def test_with_redis_down_the_expired_copy_is_served_stale_and_counted(
    serve_ranking: ServeRanking, peers: dict[str, str], author: ArticleAuthor, tmp_path: Path
) -> None:
    await author.publish()
    with own_redis(tmp_path) as redis_proc:
        stub = await serve_ranking(
            redis_url=url_of(redis_proc), peers=peers, ttl_seconds=1, refresh_interval_seconds=0.05
        )
        await stub.RunRanking(run(1))
        expected = await ranked_ids(stub)
        assert expected
        redis_proc.stop()
        counted = stale_serves()

        async def served_stale() -> bool:
            reply = await stub.TopArticles(ranking_pb2.TopArticlesRequest())
            return reply.stale and [a.id for a in reply.articles] == expected

        await eventually(served_stale, "the expired copy is served stale with Redis down")
        assert stale_serves() > counted
        code, reason = await refusal(stub.RunRanking(run(2)))
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, Reason.JOB_FAILED)
