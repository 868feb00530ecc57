"""gRPC-level tests of the follow service on SQLite and MariaDB with real Redis.

Every RPC and refusal, the Redis cache of counts, and exact counts under concurrent
follow/unfollow (checked against the relations table itself).
"""

from __future__ import annotations

import asyncio
import random
from functools import partial
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from kit.sql import create_engine
from kit.tests.rpc import refusal_of
from services.follow.errors import DOMAIN, Reason
from services.follow.repository.cache import stats_key
from webook.follow.v1 import follow_pb2

if TYPE_CHECKING:
    from webook.follow.v1.follow_pb2_grpc import FollowServiceAsyncStub

pytestmark = pytest.mark.integration

AUTHOR = 1000


refusal = partial(refusal_of, domain=DOMAIN)


async def stats(stub: FollowServiceAsyncStub, uid: int) -> tuple[int, int]:
    """``(followers, followees)`` of ``uid``."""
    reply = await stub.GetFollowStatic(follow_pb2.GetFollowStaticRequest(uid=uid))
    return reply.static.followers, reply.static.followees


async def follow(stub: FollowServiceAsyncStub, follower: int, followee: int) -> None:
    """``follower`` follows ``followee``."""
    await stub.Follow(follow_pb2.FollowRequest(follower=follower, followee=followee))


async def cancel(stub: FollowServiceAsyncStub, follower: int, followee: int) -> None:
    """``follower`` stops following ``followee``."""
    await stub.CancelFollow(follow_pb2.CancelFollowRequest(follower=follower, followee=followee))


async def test_follow_lists_status_and_counts(stub: FollowServiceAsyncStub) -> None:
    for fan in (1, 2, 3):
        await follow(stub, fan, AUTHOR)
    await follow(stub, 1, AUTHOR)  # idempotent
    await follow(stub, AUTHOR, 1)
    assert await stats(stub, AUTHOR) == (3, 1)
    assert await stats(stub, 1) == (1, 1)

    first = await stub.GetFollower(follow_pb2.GetFollowerRequest(followee=AUTHOR, limit=2))
    assert [r.follower for r in first.relations] == [3, 2]
    assert first.next_cursor > 0
    rest = await stub.GetFollower(
        follow_pb2.GetFollowerRequest(followee=AUTHOR, min_id=first.next_cursor, limit=2)
    )
    assert [r.follower for r in rest.relations] == [1]
    assert rest.next_cursor == 0
    followees = await stub.GetFollowee(follow_pb2.GetFolloweeRequest(follower=1))
    assert [(r.follower, r.followee) for r in followees.relations] == [(1, AUTHOR)]
    assert followees.relations[0].ctime_ms > 0

    info = await stub.FollowInfo(follow_pb2.FollowInfoRequest(follower=1, followee=AUTHOR))
    assert (info.following, info.followed_by) == (True, True)
    info = await stub.FollowInfo(follow_pb2.FollowInfoRequest(follower=AUTHOR, followee=2))
    assert (info.following, info.followed_by) == (False, True)

    await cancel(stub, 2, AUTHOR)
    await cancel(stub, 2, AUTHOR)  # idempotent
    await cancel(stub, 9, AUTHOR)  # never followed: nothing to do
    assert await stats(stub, AUTHOR) == (2, 1)
    assert await stats(stub, 2) == (0, 0)
    followers = await stub.GetFollower(follow_pb2.GetFollowerRequest(followee=AUTHOR))
    assert [r.follower for r in followers.relations] == [3, 1]

    await follow(stub, 2, AUTHOR)  # reactivates the old row
    assert await stats(stub, AUTHOR) == (3, 1)
    assert await stats(stub, 404) == (0, 0)


async def test_counts_are_cached_and_invalidated(
    stub: FollowServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await follow(stub, 1, AUTHOR)
    assert await stats(stub, AUTHOR) == (1, 0)
    assert await redis_client.hgetall(stats_key(AUTHOR)) == {b"followers": b"1", b"followees": b"0"}
    await follow(stub, 2, AUTHOR)
    assert not await redis_client.exists(stats_key(AUTHOR))
    assert await stats(stub, AUTHOR) == (2, 0)
    # A corrupt entry reads as a miss.
    await redis_client.hset(stats_key(AUTHOR), mapping={"followers": "x", "followees": "0"})
    assert await stats(stub, AUTHOR) == (2, 0)


async def test_refusals(stub: FollowServiceAsyncStub) -> None:
    code, reason = await refusal(follow(stub, 5, 5))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.SELF)
    code, reason = await refusal(cancel(stub, 5, 5))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.SELF)
    code, reason = await refusal(follow(stub, 0, 5))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_USER)
    code, reason = await refusal(
        stub.GetFollowee(follow_pb2.GetFolloweeRequest(follower=1, limit=101))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE)
    code, reason = await refusal(
        stub.GetFollower(follow_pb2.GetFollowerRequest(followee=1, min_id=-1))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_PAGE)
    code, reason = await refusal(stub.GetFollowStatic(follow_pb2.GetFollowStaticRequest(uid=-3)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_USER)
    code, reason = await refusal(
        stub.FollowInfo(follow_pb2.FollowInfoRequest(follower=1, followee=0))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_USER)


async def test_counts_stay_exact_under_concurrent_follow_and_unfollow(
    stub: FollowServiceAsyncStub, database_url: str
) -> None:
    rng = random.Random(7)
    fans = list(range(1, 101))

    async def churn(fan: int) -> None:
        # Each fan races itself too: repeated follows and cancels of the same pair.
        for _ in range(4):
            first = follow if rng.random() < 0.6 else cancel
            async with asyncio.TaskGroup() as pair:
                pair.create_task(first(stub, fan, AUTHOR))
                pair.create_task(follow(stub, fan, AUTHOR))

    # A task group, not gather: a failed call cancels the other fans before teardown.
    async with asyncio.TaskGroup() as fans_at_once:
        for fan in fans:
            fans_at_once.create_task(churn(fan))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            active = (
                (
                    await conn.execute(
                        text(
                            "SELECT follower FROM follow_relations"
                            " WHERE followee = :a AND status = 1"
                        ),
                        {"a": AUTHOR},
                    )
                )
                .scalars()
                .all()
            )
            stored = (
                await conn.execute(
                    text("SELECT followers FROM follow_stats WHERE uid = :a"), {"a": AUTHOR}
                )
            ).scalar_one()
            fan_counts: dict[int, int] = dict(
                (
                    await conn.execute(
                        text("SELECT uid, followees FROM follow_stats WHERE uid <= 100")
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    assert stored == len(active)
    assert await stats(stub, AUTHOR) == (len(active), 0)
    assert {fan: fan_counts.get(fan, 0) for fan in fans} == {
        fan: int(fan in set(active)) for fan in fans
    }
