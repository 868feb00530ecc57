"""Benchmark of the rate limiters: our Redis sliding window against ``limits``, and in-process.

Run ``python -m bench.ratelimit``. A throwaway redis-server is started on a free port.
``CALLERS`` concurrent tasks check keys spread over ``KEYS`` clients (a per-IP rule of
``LIMIT`` per minute, so nearly every check is admitted and each does the full write) for
``ROUND_SECONDS``, in alternating rounds against:

- the ``limits`` library's moving window (``MovingWindowRateLimiter`` on its async Redis
  storage, ``implementation="redispy"``): one Lua round trip per check;
- our sliding window log, exact per check (``RedisSlidingWindowLog``, one ``EVALSHA`` per
  check);
- the same limiter with ``batching=True``: concurrent checks coalesced into one ``EVALSHA``
  per flush, still exact (each check runs atomically in the script, in order).

Both sides use a 64-connection ``BlockingConnectionPool`` on the same Redis. The printed
ratios are medians of the per-round ratios (goal for the batched limiter: >= 1.5); the
latency column is callers / throughput (Little's law), what a check waits on average at
that load. Then the in-process token bucket's checks per second are measured.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from bench._report import result
from devstack.infra import free_port, redis_process
from kit.ratelimit import LocalTokenBucket, Quota, RedisSlidingWindowLog, TokenBucket
from kit.redisx import create_redis

CALLERS = 64
KEYS = 1000
LIMIT = 1000
ROUNDS = 6
ROUND_SECONDS = 1.5
POOL_SIZE = 64
GOAL = 1.5

Check = Callable[[str], Awaitable[object]]


async def measure(check: Check, seconds: float) -> tuple[float, float]:
    """Checks per second with ``CALLERS`` concurrent callers, and loop CPU µs per check."""
    done = 0
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def caller(offset: int) -> None:
        nonlocal done
        n = offset
        while loop.time() < stop:
            await check(f"203.0.113.{n % KEYS}")
            n += CALLERS
            done += 1

    started, cpu_started = loop.time(), time.thread_time()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    cpu = time.thread_time() - cpu_started
    return done / (loop.time() - started), cpu / done * 1e6


async def compare(url: str) -> None:
    """``limits`` moving window vs our sliding window log, direct and batched."""
    ours_client = create_redis(url, max_connections=POOL_SIZE, timeout=5)
    limits_pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=5
    )
    # limits passes connection_pool through to redis-py; its stubs type options as scalars.
    storage = RedisStorage(
        "async+" + url,
        implementation="redispy",
        connection_pool=limits_pool,  # type: ignore[arg-type]
    )
    moving = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(LIMIT)
    quota = Quota(limit=LIMIT, period=60)
    direct = RedisSlidingWindowLog(ours_client, quota, prefix="bench:direct")
    batched = RedisSlidingWindowLog(ours_client, quota, prefix="bench:batched", batching=True)

    async def via_limits(key: str) -> object:
        return await moving.hit(item, key)

    contenders: dict[str, Check] = {
        "limits": via_limits,
        "direct": direct.acquire,
        "batched": batched.acquire,
    }
    for check in contenders.values():
        await measure(check, 0.3)  # warm-up: scripts loaded, pools filled
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for round_no in range(ROUNDS):
        # Rotate the order so that drifting background load and key growth cancel out.
        for name in order[round_no % 3 :] + order[: round_no % 3]:
            await ours_client.flushdb()
            rate, cpu_us = await measure(contenders[name], ROUND_SECONDS)
            rates[name].append(rate)
            cpu[name].append(cpu_us)
        print(
            f"round {round_no + 1}: limits {rates['limits'][-1]:7.0f}/s, "
            f"ours exact per check {rates['direct'][-1]:7.0f}/s, "
            f"ours batched {rates['batched'][-1]:7.0f}/s"
        )
    for name, label in (
        ("limits", "limits moving window      "),
        ("direct", "ours, one EVALSHA a check "),
        ("batched", "ours, batched EVALSHA     "),
    ):
        rate = statistics.median(rates[name])
        print(
            f"{label} {rate:8.0f} checks/s  {statistics.median(cpu[name]):5.1f} us CPU/check  "
            f"{CALLERS / rate * 1000:5.2f} ms latency"
        )
    direct_ratio = statistics.median(
        d / b for d, b in zip(rates["direct"], rates["limits"], strict=True)
    )
    batched_ratio = statistics.median(
        d / b for d, b in zip(rates["batched"], rates["limits"], strict=True)
    )
    print(f"ratio ours exact per check / limits: {direct_ratio:.2f}")
    verdict = "met" if batched_ratio >= GOAL else "NOT met"
    result(
        "Redis sliding window (batched) vs `limits` moving window",
        f"{statistics.median(rates['batched']):.0f} checks/s",
        f"{statistics.median(rates['limits']):.0f} checks/s",
        batched_ratio,
        f">= {GOAL}",
        batched_ratio >= GOAL,
    )
    result(
        "Redis sliding window, one EVALSHA per check, vs `limits`",
        f"{statistics.median(rates['direct']):.0f} checks/s",
        f"{statistics.median(rates['limits']):.0f} checks/s",
        direct_ratio,
    )
    print(
        f"ratio ours batched / limits moving window: {batched_ratio:.2f} "
        f"(median of {ROUNDS} rounds; goal >= {GOAL}: {verdict})"
    )
    await batched.aclose()
    await ours_client.aclose(close_connection_pool=True)
    await limits_pool.aclose()


def in_process() -> None:
    """Checks per second of the in-process token bucket: bare, keyed sync, keyed async."""
    seconds = 1.0
    bucket = TokenBucket(rate=1e9, capacity=1e9)
    limiter = LocalTokenBucket(Quota(limit=10**9, period=1))
    keys = [f"203.0.113.{i}" for i in range(KEYS)]

    def bare() -> int:
        for _ in range(KEYS):
            bucket.try_acquire()
        return KEYS

    def keyed() -> int:
        for key in keys:
            limiter.check(key)
        return KEYS

    def rate_of(batch: Callable[[], int]) -> float:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            n += batch()
        return n / (time.perf_counter() - started)

    async def awaited() -> float:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for key in keys:
                await limiter.acquire(key)
            n += KEYS
        return n / (time.perf_counter() - started)

    print(f"in-process TokenBucket.try_acquire (one bucket): {rate_of(bare):10.0f} checks/s")
    print(f"in-process LocalTokenBucket.check ({KEYS} keys):  {rate_of(keyed):10.0f} checks/s")
    print(
        f"in-process LocalTokenBucket.acquire (awaited):   {asyncio.run(awaited()):10.0f} checks/s"
    )


def main() -> None:
    """Start Redis, compare, stop Redis; then the in-process numbers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = redis_process(port, Path(scratch))
        with server:
            asyncio.run(compare(f"redis://127.0.0.1:{port}/0"))
    in_process()


if __name__ == "__main__":
    main()
