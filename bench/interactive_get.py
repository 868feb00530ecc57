"""Micro-benchmark of ``InteractiveService.get``: the read behind ``GET /articles/pub/:id``.

Run ``python -m bench.interactive_get`` (about 15 s). It starts a throwaway Redis in a
temporary directory, migrates a SQLite database there and wires the service as
``python -m services.interactive`` does (real repository, aiosqlite, redis-py), without
gRPC. One article gets reads, likes and a collect; then ``get`` is called in a loop:

- **anonymous**: ``uid`` 0, counts only;
- **signed in**: ``uid`` of a reader who liked and collected the article (counts + flags).

Each case runs with the counts (and flags) cached, as in the steady state of the read path,
once through the SQL unit of work only (``cached reads off``: no fast path, every call opens
a session), once with the cached fast path on Redis alone (``cached reads on``: one Redis
round trip per call) and once with the in-process copies in front of Redis, their
invalidation feed subscribed as ``python -m services.interactive`` wires it
(``in-process on``: no round trip while nothing changes; the feed's pings count in the
CPU). For each it prints wall time and CPU time of this process per call
(``time.process_time``: Redis runs in another process, so this is the interactive service's
own cost) and SQL statements per call. The exit code is 1 if the fast
path is not cheaper in CPU than the SQL path for signed-in readers, or the in-process copies
not cheaper than Redis alone.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._targets import ReadOnlyTargets
from devstack.infra import ManagedProcess, free_port, redis_process
from kit.migrations import upgrade_async
from kit.redisx import create_redis
from kit.sql import create_engine, session_factory
from services.interactive.domain import Counts, Interactive
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.service import InteractiveService

ARTICLE = "article"
ARTICLE_ID = 1
READER = 7
WARMUP_CALLS = 300
CALLS = 2000
ROUNDS = 3


@dataclass
class Result:
    """Per-call costs of one measured loop."""

    wall_us: float
    cpu_us: float
    statements: float


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[int]]:
    """A one-element list holding the number of SQL statements executed inside the block."""
    seen = [0]

    def record(*_: Any) -> None:
        seen[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def measure(service: InteractiveService, engine: AsyncEngine, uid: int) -> Result:
    """Best of ``ROUNDS`` loops of ``CALLS`` sequential ``get`` calls (after a warm-up)."""
    for _ in range(WARMUP_CALLS):
        await service.get(ARTICLE, ARTICLE_ID, uid)
    best: Result | None = None
    for _ in range(ROUNDS):
        with count_statements(engine) as statements:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(CALLS):
                await service.get(ARTICLE, ARTICLE_ID, uid)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = Result(wall / CALLS * 1e6, cpu / CALLS * 1e6, statements[0] / CALLS)
        if best is None or result.cpu_us < best.cpu_us:
            best = result
    if best is None:
        raise RuntimeError("no rounds measured")
    return best


async def run(redis_url: str, scratch: Path) -> dict[tuple[str, str], Result]:
    """Seed one article, then measure every case; returns results by (mode, case)."""
    database_url = f"sqlite+aiosqlite:///{scratch / 'interactive.db'}"
    await upgrade_async("interactive", database_url)
    engine = create_engine(database_url)
    redis = create_redis(redis_url)
    sessions = session_factory(engine)
    cache = CountsCache(redis)
    local = LocalCounts(redis)
    local_cache = CountsCache(redis, local=local)
    targets = ReadOnlyTargets()
    services = {
        "cached reads off": InteractiveService(
            lambda: SqlUnitOfWork(sessions, cache), targets=targets
        ),
        "cached reads on": InteractiveService(
            lambda: SqlUnitOfWork(sessions, cache), cached=cache, targets=targets
        ),
        "in-process on": InteractiveService(
            lambda: SqlUnitOfWork(sessions, local_cache), cached=local_cache, targets=targets
        ),
    }
    results: dict[tuple[str, str], Result] = {}
    local.start()
    try:
        for _ in range(500):
            if local.feed.fresh:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the invalidation feed did not subscribe")
        writer = services["cached reads on"]
        await writer.add_reads(ARTICLE, {ARTICLE_ID: 42})
        for uid in range(1, 11):
            await writer.like(ARTICLE, ARTICLE_ID, uid)
        await writer.collect(ARTICLE, ARTICLE_ID, READER, 0)
        for mode, service in services.items():
            for case, uid in (("anonymous", 0), ("signed in", READER)):
                intr = await service.get(ARTICLE, ARTICLE_ID, uid)
                expected = Interactive(ARTICLE, ARTICLE_ID, Counts(42, 10, 1), uid > 0, uid > 0)
                if intr != expected:
                    raise RuntimeError(f"{mode}, {case}: got {intr}, expected {expected}")
                results[(mode, case)] = await measure(service, engine, uid)
        if not len(local.counts) or not len(local.flags):
            raise RuntimeError("the in-process copies were not used")
    finally:
        await local.aclose()
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()
    return results


def report(results: dict[tuple[str, str], Result]) -> bool:
    """Print the table; whether the fast path is cheaper for signed-in readers."""
    print(f"{'mode':<18} {'case':<10} {'wall µs/call':>13} {'CPU µs/call':>12} {'SQL/call':>9}")
    for (mode, case), r in results.items():
        print(f"{mode:<18} {case:<10} {r.wall_us:13.0f} {r.cpu_us:12.0f} {r.statements:9.2f}")
    for case in ("anonymous", "signed in"):
        off, on = results[("cached reads off", case)], results[("cached reads on", case)]
        local = results[("in-process on", case)]
        print(f"{case}: CPU per call {off.cpu_us / on.cpu_us:.1f} times lower with cached reads")
        print(f"{case}: CPU per call {on.cpu_us / local.cpu_us:.1f} times lower in process")
    signed_off = results[("cached reads off", "signed in")]
    signed_on = results[("cached reads on", "signed in")]
    signed_local = results[("in-process on", "signed in")]
    return signed_on.cpu_us < signed_off.cpu_us and signed_local.cpu_us < signed_on.cpu_us


def main() -> int:
    """Start Redis, measure, print, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        port = free_port()
        redis: ManagedProcess = redis_process(port, scratch)
        with redis:
            results = asyncio.run(run(f"redis://127.0.0.1:{port}/0", scratch))
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
