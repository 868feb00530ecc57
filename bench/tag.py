"""Benchmark of the tag service's per-replica cache: preloaded lookups against SQL.

Run ``python -m bench.tag`` (``--mysql-url`` names the MariaDB/MySQL server, default
``mysql+asyncmy://root@127.0.0.1:3306``; ``--sqlite-only`` skips it; ``--users`` sets N).
Each database (a SQLite file in a temporary directory, and a scratch MariaDB database
created and dropped here) gets the tag service's migrations and ``--users`` users, each
with ``TAGS_PER_USER`` tags and ``ARTICLES_PER_USER`` tagged articles of ``TAGS_PER_ARTICLE``
tags (the shape docs/tag.md sizes the cache with: 220 rows a user), all changed in the last
days, bulk-inserted with SQLAlchemy core into the service's tables. The real
:class:`services.tag.service.TagService`, SQL repository and
:class:`services.tag.cache.TagCache` run over it (the article service, needed only by
AttachTags, is not called). Two measures, on each database:

1. **Preload.** :meth:`TagService.preload` of every user into an empty cache large enough
   for them all: wall time (median of ``PRELOAD_ROUNDS``), and in a separate pass under
   ``tracemalloc`` the memory the filled cache keeps (and the pass's peak, which includes
   the rows read). Checked: every user and every resource was cached.
2. **Lookups: preloaded cache vs SQL.** ``ListUserTags`` and ``GetResourceTags`` of random
   users and articles through the service. *Cached*: the preloaded service, every lookup a
   hit. *SQL*: the same service code with a cache of one entry per kind and keys that never
   repeat twice in a row, so every lookup is a miss: the SQL read and the fill a cold
   replica does. The sides alternate in ``ROUNDS`` rounds (which goes first alternating);
   lookups per second are the median over the rounds (goal: cached at least
   ``SPEED_GOAL`` x SQL). Checked: both sides answer the same for a sample of keys.

The exit code is 2 if a check fails, 1 on an error (a database that cannot be reached), 0
otherwise: missed goals are reported, not failed. On a shared machine, compare the ratios
(both sides measured alike) rather than the absolute figures.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._databases import CheckFailed, database_options, mysql_server, run_measures
from bench._report import result
from kit.migrations import upgrade_async
from kit.sql import SessionFactory, create_engine, scratch_database, session_factory
from services.tag.cache import TagCache
from services.tag.domain import ARTICLE_BIZ, TagLimits
from services.tag.repository import SqlUnitOfWork, tag_outbox
from services.tag.repository.dao import LinkRow, ResourceRow, TagRow
from services.tag.service import PreloadLimits, TagService

SEED: Final = 20_261_207
NOW_MS: Final = 1_800_000_000_000
DAY_MS: Final = 86_400_000
USERS: Final = 1_000
TAGS_PER_USER: Final = 20
ARTICLES_PER_USER: Final = 50
TAGS_PER_ARTICLE: Final = 3
PRELOAD_ROUNDS: Final = 1
ROUNDS: Final = 5
CACHED_PER_ROUND: Final = 20_000
SQL_PER_ROUND: Final = 200
CHECKED_KEYS: Final = 200
SPEED_GOAL: Final = 10.0
KIB: Final = 1024
MIB: Final = 1024 * 1024
# Rows per INSERT when seeding (below SQLite's bound on a statement's parameters).
SEED_CHUNK: Final = 5_000


class NoArticles:
    """The article service port; the measured calls never ask it."""

    async def author_of(self, article_id: int) -> int | None:
        """Nobody authored anything here."""
        raise CheckFailed(f"the benchmark asked for the author of article {article_id}")


@dataclass(frozen=True)
class Backend:
    """A database the measures run on."""

    name: str
    url: str


@dataclass(frozen=True)
class PreloadFigures:
    """What the preload cost."""

    seconds: float
    entries: int
    rows: int
    kept_bytes: int
    peak_bytes: int


def article_of(uid: int, index: int) -> int:
    """The id of user ``uid``'s ``index``-th article."""
    return (uid - 1) * ARTICLES_PER_USER + index + 1


async def seed(engine: AsyncEngine, users: int) -> int:
    """Write ``users`` users' tags, resources and links (see the module); rows written."""
    rng = random.Random(SEED)
    tags: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for uid in range(1, users + 1):
        first_tag = (uid - 1) * TAGS_PER_USER + 1
        own = list(range(first_tag, first_tag + TAGS_PER_USER))
        for tag_id in own:
            ctime = NOW_MS - rng.randrange(6 * DAY_MS)
            tags.append({"id": tag_id, "uid": uid, "name": f"topic-{tag_id % 997}", "ctime": ctime})
        for index in range(ARTICLES_PER_USER):
            biz_id = article_of(uid, index)
            utime = NOW_MS - rng.randrange(6 * DAY_MS)
            resources.append(
                {
                    "id": biz_id,
                    "biz": ARTICLE_BIZ,
                    "biz_id": biz_id,
                    "uid": uid,
                    "version": 1,
                    "utime": utime,
                }
            )
            for tag_id in rng.sample(own, TAGS_PER_ARTICLE):
                links.append(
                    {
                        "id": len(links) + 1,
                        "tag_id": tag_id,
                        "uid": uid,
                        "biz": ARTICLE_BIZ,
                        "biz_id": biz_id,
                        "ctime": utime,
                    }
                )
    async with engine.begin() as conn:
        for table, rows in (
            (TagRow, tags),
            (ResourceRow, resources),
            (LinkRow, links),
        ):
            for start in range(0, len(rows), SEED_CHUNK):
                await conn.execute(insert(table), rows[start : start + SEED_CHUNK])
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("ANALYZE")
        else:
            for name in ("tags", "tag_resources", "tag_links"):
                await conn.exec_driver_sql(f"ANALYZE TABLE {name}")
    return len(tags) + len(resources) + len(links)


def service_over(sessions: SessionFactory, cache: TagCache) -> TagService:
    """The production service over ``sessions`` with ``cache``, its clock at ``NOW_MS``."""
    outbox = tag_outbox()
    return TagService(
        lambda: SqlUnitOfWork(sessions, outbox),
        owners=NoArticles(),
        cache=cache,
        limits=lambda: TagLimits(per_user=1_000, per_resource=20),
        clock=lambda: NOW_MS,
    )


def big_cache(users: int) -> TagCache:
    """A cache that holds every user and article."""
    return TagCache(max_users=users, max_resources=users * ARTICLES_PER_USER, max_age_s=24 * 3600.0)


def one_entry_cache() -> TagCache:
    """A cache of one entry per kind: with no key twice in a row, every lookup misses."""
    return TagCache(max_users=1, max_resources=1, max_age_s=24 * 3600.0)


def everyone(users: int) -> PreloadLimits:
    """Preload bounds that admit every generated user."""
    return PreloadLimits(days=7, max_users=users, max_rows=users * 1_000)


async def measure_preload(
    sessions: SessionFactory, users: int
) -> tuple[PreloadFigures, TagService]:
    """Preload figures (see the module), and a service whose cache holds everyone."""
    seconds: list[float] = []
    service = service_over(sessions, big_cache(users))
    for _ in range(PRELOAD_ROUNDS):
        service = service_over(sessions, big_cache(users))
        gc.collect()
        done = await service.preload(everyone(users))
        seconds.append(done.seconds)
        if done.users != users or done.entries != users * (1 + ARTICLES_PER_USER):
            raise CheckFailed(f"preload cached {done.users} users, {done.entries} entries")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        traced = service_over(sessions, big_cache(users))
        done = await traced.preload(everyone(users))
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del traced
    figures = PreloadFigures(
        seconds=statistics.median(seconds),
        entries=done.entries,
        rows=done.rows,
        kept_bytes=kept - before,
        peak_bytes=peak - before,
    )
    return figures, service


def keys(rng: random.Random, count: int, users: int) -> list[tuple[int, int]]:
    """``count`` random (user, article of the user), never the same user twice in a row."""
    found: list[tuple[int, int]] = []
    last = 0
    while len(found) < count:
        uid = rng.randint(1, users)
        if uid != last:
            found.append((uid, article_of(uid, rng.randrange(ARTICLES_PER_USER))))
            last = uid
    return found


async def lookups(service: TagService, sample: list[tuple[int, int]]) -> float:
    """Seconds for a user-tags and a resource-tags lookup of each key of ``sample``."""
    started = time.perf_counter()
    for uid, article in sample:
        await service.list_user_tags(uid)
        await service.get_resource_tags(uid, ARTICLE_BIZ, article)
    return time.perf_counter() - started


async def check_same(cached: TagService, cold: TagService, sample: list[tuple[int, int]]) -> None:
    """The preloaded cache must answer what SQL answers."""
    for uid, article in sample:
        if await cached.list_user_tags(uid) != await cold.list_user_tags(uid):
            raise CheckFailed(f"user {uid}: the cache and SQL disagree")
        a = await cached.get_resource_tags(uid, ARTICLE_BIZ, article)
        b = await cold.get_resource_tags(uid, ARTICLE_BIZ, article)
        if a != b or len(a.tags) != TAGS_PER_ARTICLE:
            raise CheckFailed(f"article {article}: cache {a} vs SQL {b}")


async def measure_lookups(cached: TagService, cold: TagService, users: int) -> dict[str, float]:
    """Lookups per second (two per key) of each side, median over the rounds."""
    rng = random.Random(SEED + 1)
    await check_same(cached, cold, keys(rng, CHECKED_KEYS, users))
    sides: dict[str, tuple[TagService, int]] = {
        "cached": (cached, CACHED_PER_ROUND),
        "sql": (cold, SQL_PER_ROUND),
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(ROUNDS):
        order = ["cached", "sql"] if round_ % 2 == 0 else ["sql", "cached"]
        for name in order:
            service, count = sides[name]
            sample = keys(rng, count, users)
            took = await lookups(service, sample)
            rates[name].append(2 * count / took)
    return {name: statistics.median(values) for name, values in rates.items()}


async def measure(backend: Backend, users: int) -> bool:
    """Both measures on one database; prints them; True if the goal is met."""
    await upgrade_async("tag", backend.url)
    engine = create_engine(backend.url)
    try:
        started = time.perf_counter()
        rows = await seed(engine, users)
        took = time.perf_counter() - started
        print(f"{backend.name}: seeded {users} users, {rows} rows in {took:.1f}s")
        sessions = session_factory(engine)
        preload, cached = await measure_preload(sessions, users)
        print(
            f"{backend.name}: preload of {users} users ({preload.entries} entries, "
            f"{preload.rows} rows): {preload.seconds:.2f}s; "
            f"cache keeps {preload.kept_bytes / MIB:.1f} MiB "
            f"({preload.kept_bytes / users / KIB:.1f} KiB a user, "
            f"{preload.kept_bytes / preload.rows:.0f} B a row), "
            f"peak {preload.peak_bytes / MIB:.1f} MiB while loading"
        )
        result(
            f"tag cache preload, {users} users ({backend.name})",
            f"{preload.seconds:.2f} s, {preload.kept_bytes / MIB:.1f} MiB",
        )
        cold = service_over(sessions, one_entry_cache())
        started = time.perf_counter()
        rates = await measure_lookups(cached, cold, users)
        ratio = rates["cached"] / rates["sql"]
        print(
            f"{backend.name}: lookups (user tags + resource tags), median of {ROUNDS} rounds "
            f"({time.perf_counter() - started:.1f}s): {rates['cached']:,.0f}/s cached "
            f"({1e6 / rates['cached']:.1f} us each) vs {rates['sql']:,.0f}/s from SQL "
            f"({1e6 / rates['sql']:.0f} us each): x{ratio:.0f}"
        )
        met = ratio >= SPEED_GOAL
        result(
            f"tag lookups, preloaded cache vs SQL ({backend.name})",
            f"{rates['cached']:,.0f} /s",
            f"{rates['sql']:,.0f} /s",
            ratio,
            f">= {SPEED_GOAL:.0f}",
            met,
        )
        return met
    finally:
        await engine.dispose()


async def run(mysql_server: str | None, users: int, scratch: Path) -> bool:
    """Every measure on every database; True if every goal is met."""
    started = time.perf_counter()
    met = await measure(Backend("SQLite", f"sqlite+aiosqlite:///{scratch / 'tag.db'}"), users)
    if mysql_server is not None:
        async with scratch_database(mysql_server, prefix="webook_bench_tag") as url:
            met &= await measure(Backend("MariaDB", url), users)
    verdict = "met" if met else "MISSED"
    print(
        f"goal (cached lookups >= {SPEED_GOAL:.0f} x SQL): {verdict}; "
        f"took {time.perf_counter() - started:.1f}s"
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, measure, print; 2 on a failed check, else 0."""
    parser = database_options(__doc__)
    parser.add_argument("--users", type=int, default=USERS, help="users generated and preloaded")
    args = parser.parse_args(argv)
    return run_measures(partial(run, mysql_server(args), args.users))


if __name__ == "__main__":
    sys.exit(main())
