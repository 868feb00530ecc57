"""Comment page cost does not grow with the number of comments (``python -m bench.comments``).

On SQLite, one article gets 1,000 and then 100,000 comments (bulk-inserted with SQL): 10%
top-level, the newest top-level comment carrying a thread with half of all replies, the other
replies spread over the other threads. For each size it measures, through the real service
and repository with the Redis cache bypassed (every call reaches SQL):

- the first page: 20 top-level comments with 3 replies each (two queries);
- a deep reply page: 20 replies near the end of the big thread (cursor ``max_id``);
- a deep top-level page: 20 top-level comments near the oldest (cursor ``min_id``).

It prints median latencies and the ratio 100k / 1k of each; the goal is at most 1.5 (pages
read index ranges, never OFFSET scans or whole threads).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench._report import result
from bench._targets import ReadOnlyTargets
from kit.migrations import upgrade
from kit.sql import create_engine, session_factory
from services.comment.domain import Comment
from services.comment.repository import SqlUnitOfWork
from services.comment.repository.cache import FirstPageCache
from services.comment.service import CommentService

ARTICLE = 1
SIZES = (1_000, 100_000)
ROUNDS = 300
GOAL = 1.5


class UncachedPages(FirstPageCache):
    """A first-page cache that always misses, so every call measures SQL."""

    def __init__(self) -> None:
        """No Redis at all."""

    async def get(self, biz: str, biz_id: int, shape: str) -> list[Comment] | None:
        """Always a miss."""
        return None

    async def set(self, biz: str, biz_id: int, shape: str, page: list[Comment]) -> None:
        """Store nothing."""

    async def invalidate(self, biz: str, biz_id: int) -> None:
        """Nothing to drop."""


@dataclass(frozen=True)
class Dataset:
    """Where the interesting cursors of a generated article are."""

    big_root: int
    deep_reply_cursor: int
    deep_top_cursor: int


def fill(path: Path, total: int) -> Dataset:
    """Insert ``total`` comments on one article; ids are assigned here, in creation order."""
    rng = random.Random(total)
    roots = total // 10
    big_root = roots  # the newest top-level comment
    rows: list[tuple[int, int, str, int, int, int, str, int, int, int]] = []
    reply_counts = dict.fromkeys(range(1, roots + 1), 0)
    for cid in range(1, roots + 1):
        rows.append((cid, cid % 97 + 1, "article", ARTICLE, 0, 0, f"comment {cid}", 0, cid, cid))
    big_thread: list[int] = []
    for cid in range(roots + 1, total + 1):
        root = big_root if cid % 2 == 0 else rng.randint(1, roots - 1)
        reply_counts[root] += 1
        if root == big_root:
            big_thread.append(cid)
        rows.append(
            (cid, cid % 97 + 1, "article", ARTICLE, root, root, f"reply {cid}", 0, cid, cid)
        )
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO comments (id, uid, biz, biz_id, root_id, parent_id, content, reply_cnt,"
            " ctime, utime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(
            "UPDATE comments SET reply_cnt = ? WHERE id = ?",
            [(n, root) for root, n in reply_counts.items() if n],
        )
        db.execute(
            "INSERT INTO comment_counts (biz, biz_id, cnt, utime) VALUES ('article', ?, ?, 0)",
            (ARTICLE, total),
        )
        db.execute("ANALYZE")
    return Dataset(
        big_root=big_root,
        deep_reply_cursor=big_thread[-25],
        deep_top_cursor=25,
    )


async def median_ms(call: Callable[[], Awaitable[list[Comment]]], expect: int) -> float:
    """Median latency of ``call`` over :data:`ROUNDS` runs, after a warm-up."""
    for _ in range(20):
        assert len(await call()) >= expect
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def measure(total: int, workdir: Path) -> dict[str, float]:
    """Median latencies of the three pages on an article with ``total`` comments."""
    path = workdir / f"comments-{total}.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, "comment", url)
    data = await asyncio.to_thread(fill, path, total)
    engine = create_engine(url)
    sessions = session_factory(engine)
    cache = UncachedPages()
    service = CommentService(lambda: SqlUnitOfWork(sessions, cache), targets=ReadOnlyTargets())
    try:
        first = await service.list_comments(
            biz="article", biz_id=ARTICLE, min_id=0, limit=20, replies=3
        )
        assert first[0].id == data.big_root
        assert len(first[0].replies) == 3
        return {
            "first page": await median_ms(
                lambda: service.list_comments(
                    biz="article", biz_id=ARTICLE, min_id=0, limit=20, replies=3
                ),
                20,
            ),
            "deep reply page": await median_ms(
                lambda: service.more_replies(
                    root_id=data.big_root, max_id=data.deep_reply_cursor - 40, limit=20
                ),
                20,
            ),
            "deep top-level page": await median_ms(
                lambda: service.list_comments(
                    biz="article", biz_id=ARTICLE, min_id=data.deep_top_cursor, limit=20, replies=3
                ),
                20,
            ),
        }
    finally:
        await engine.dispose()


async def run() -> int:
    """Measure both sizes, print the table; non-zero exit if a ratio misses the goal."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        small = await measure(SIZES[0], Path(tmp))
        large = await measure(SIZES[1], Path(tmp))
    print(f"comment pages on SQLite, median of {ROUNDS} calls (cache bypassed)")
    print(f"{'page':<22}{'1k (ms)':>10}{'100k (ms)':>12}{'ratio':>8}")
    worst = 0.0
    for name, small_ms in small.items():
        ratio = large[name] / small_ms
        worst = max(worst, ratio)
        print(f"{name:<22}{small_ms:>10.3f}{large[name]:>12.3f}{ratio:>8.2f}")
        result(
            f"comment {name}, 100k vs 1k comments",
            f"{large[name]:.2f} ms",
            f"{small_ms:.2f} ms",
            ratio,
            f"<= {GOAL}",
            ratio <= GOAL,
        )
    verdict = "OK" if worst <= GOAL else "MISSED"
    took = time.monotonic() - started
    print(f"worst ratio {worst:.2f} (goal <= {GOAL}): {verdict}; took {took:.1f} s")
    return 0 if worst <= GOAL else 1


def main() -> None:
    """Entry point."""
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
