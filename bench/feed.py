"""Benchmark of the feed service: the hybrid read against push-only, and fan-out throughput.

Run ``python -m bench.feed`` (``--mysql-url`` names the MariaDB/MySQL server, default
``mysql+asyncmy://root@127.0.0.1:3306``; ``--sqlite-only`` skips it). Each database (a
SQLite file in a temporary directory, and a scratch MariaDB database created and dropped
here) gets the feed service's migrations; the real :class:`services.feed.service.FeedService`
and SQL repository run over it, with the follow service replaced by :class:`Follows`, an
in-memory map answering at once (so the figures are the feed's own cost, without the
follow service's calls a production read also waits for).

The reader follows ``AUTHORS`` authors; the first ``BIG_AUTHORS`` of them have
``BIG_FOLLOWERS`` followers each and publish ``BIG_POSTS`` articles, the others ``POSTS``,
at random times over ``WINDOW_DAYS``. The data is bulk-inserted with SQLAlchemy core into
the service's tables, twice, as each model leaves it:

- **hybrid** (production threshold): the big authors' publications are pull (one
  ``feed_events`` row each, their authors ``has_pull``), the others were fanned out, so the
  reader's inbox holds the ordinary authors' events;
- **push-only** (threshold above every author): every publication was fanned out, so the
  reader's inbox holds them all.

Both also hold the publications of ``OTHER_AUTHORS`` authors the reader does not follow
(pushed), and ``BACKGROUND_OWNERS`` other readers' inbox rows, so that neither the events
nor the inbox are the reader's alone (with every event in the reader's inbox, MariaDB's
optimizer reads the inbox query from ``feed_events`` instead, a plan a real deployment's
proportions do not choose). Two measures, on each database:

1. **First-page latency, hybrid vs push-only.** ``GetFeed(reader, "", 20)`` through the
   service: followees, the ``has_pull`` query over them, the inbox keyset query and, in the
   hybrid model, the outbox merge. Both models must serve the same pages (checked on the
   first two). The sides alternate in ``ROUNDS`` rounds of ``PER_ROUND`` reads, which goes
   first alternating too, after a warm-up; p50 and p99 over all reads are compared (goal:
   hybrid p99 at most ``READ_GOAL`` x push-only).
2. **Fan-out throughput.** On the push-only database, an author with ``FANOUT_FOLLOWERS``
   followers (below the push-only threshold) publishes; ``article_published`` records the
   event and runs the fan-out to its end, one transaction per batch of followers (the job
   row locked and advanced with the batch's inbox rows). Inbox rows per second of the
   whole publication, for several batch sizes (the production default first), against the
   floor: the same rows written by the same DAO statement in chunks of the default batch
   size in **one** transaction, with no job, no follower paging and no per-batch commit.
   Every run must leave exactly ``FANOUT_FOLLOWERS`` inbox rows for its event.
   Informative (no goal): it says what the fan-out's crash safety costs over the bare
   writes.

The exit code is 2 if a check fails, 1 on an error (a database that cannot be reached), 0
otherwise: missed goals are reported, not failed. On a shared machine, compare the ratios
(both sides measured alike) rather than the absolute figures.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._databases import (
    CheckFailed,
    database_options,
    ms,
    mysql_server,
    percentile,
    run_measures,
)
from bench._report import result
from kit.migrations import upgrade_async
from kit.sql import SessionFactory, create_engine, scratch_database, session_factory
from services.feed.domain import EventKind, FeedPage, Model, article_published
from services.feed.peers import FollowerPage
from services.feed.repository import SqlUnitOfWork
from services.feed.repository.dao import AuthorRow, EventRow, FeedDAO, InboxRow
from services.feed.service import FeedService

SEED: Final = 20_261_207
T0: Final = 1_800_000_000_000
DAY_MS: Final = 86_400_000
WINDOW_DAYS: Final = 30
READER: Final = 5_000_000
AUTHORS: Final = 1_000
BIG_AUTHORS: Final = 5
BIG_FOLLOWERS: Final = 100_000
POSTS: Final = 20
BIG_POSTS: Final = 100
OTHER_AUTHORS: Final = 4_000
BACKGROUND_OWNERS: Final = 100
BACKGROUND_ROWS: Final = 2_000
# The production default threshold: the big authors are above it, the others below.
THRESHOLD: Final = 10_000
# Above every author: everything is pushed.
PUSH_ONLY_THRESHOLD: Final = BIG_FOLLOWERS + 1
PAGE: Final = 20
WARM_UP: Final = 50
ROUNDS: Final = 10
PER_ROUND: Final = 50
READ_GOAL: Final = 2.0

FANOUT_AUTHOR: Final = 9_000_000
FANOUT_FOLLOWERS: Final = 20_000
FOLLOWER_BASE: Final = 10_000_000
DEFAULT_BATCH: Final = 500
BATCHES: Final = (DEFAULT_BATCH, 2_000)
FANOUT_ROUNDS: Final = 2
# Rows per INSERT when seeding (below SQLite's bound on a statement's parameters).
SEED_CHUNK: Final = 5_000


class Follows:
    """The follow service as the feed asks it, in memory (see the module).

    ``followees`` answers the reader's authors; ``count`` the follower counts given (else
    the length of a follower list); ``followers`` pages a list with the follow service's
    cursor contract (0 to start, 0 again after the last page).
    """

    def __init__(self, followees: dict[int, list[int]], counts: dict[int, int]) -> None:
        self._followees = followees
        self._counts = counts
        self._followers: dict[int, list[int]] = {}

    def set_followers(self, author: int, uids: list[int]) -> None:
        """``author``'s followers, newest first."""
        self._followers[author] = uids

    async def followers(self, author: int, *, cursor: int, limit: int) -> FollowerPage:
        """A page of ``author``'s followers from ``cursor`` (the next position, 1-based)."""
        everyone = self._followers.get(author, [])
        start = max(cursor - 1, 0)
        page = everyone[start : start + limit]
        end = start + len(page)
        return FollowerPage(uids=page, next_cursor=end + 1 if end < len(everyone) else 0)

    async def count(self, author: int) -> int:
        """``author``'s follower count."""
        return self._counts.get(author, len(self._followers.get(author, [])))

    async def followees(self, reader: int, *, at_most: int) -> list[int]:
        """Who ``reader`` follows."""
        return self._followees.get(reader, [])[:at_most]


@dataclass(frozen=True)
class Published:
    """One article publication of the generated data set."""

    author: int
    article_id: int
    at_ms: int

    @property
    def event_id(self) -> str:
        """Its feed event id (as :func:`services.feed.domain.article_published` makes it)."""
        return f"ap-{self.article_id}"

    @property
    def big(self) -> bool:
        """Whether its author is above the threshold."""
        return self.author <= BIG_AUTHORS


@dataclass(frozen=True)
class Backend:
    """A database the measures run on."""

    name: str
    hybrid_url: str
    push_url: str


def follower_count(author: int) -> int:
    """Followers of author ``author`` (the big ones above the threshold, the others below)."""
    return BIG_FOLLOWERS if author <= BIG_AUTHORS else 100 + (author * 37) % 5_000


def publications() -> list[Published]:
    """Every article of the reader's authors and of the others, at random times in the
    window (and one of each big author's in the last minutes, so the first page merges the
    outbox)."""
    rng = random.Random(SEED)
    found: list[Published] = []
    article_id = 0
    for author in range(1, AUTHORS + OTHER_AUTHORS + 1):
        for post in range(BIG_POSTS if author <= BIG_AUTHORS else POSTS):
            article_id += 1
            at_ms = T0 - rng.randrange(WINDOW_DAYS * DAY_MS)
            if author <= BIG_AUTHORS and post == 0:
                at_ms = T0 - author * 60_000  # each big author published minutes ago
            found.append(Published(author, article_id, at_ms))
    return found


def chunks(
    rows: Sequence[dict[str, Any]], size: int = SEED_CHUNK
) -> Iterable[list[dict[str, Any]]]:
    """``rows`` in lists of at most ``size``."""
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


async def seed(engine: AsyncEngine, articles: list[Published], *, hybrid: bool) -> int:
    """Write the data set as the model leaves it (see the module); inbox rows written."""
    rng = random.Random(SEED + 1)
    pull = {a.event_id for a in articles if hybrid and a.big}
    events = [
        {
            "event_id": a.event_id,
            "kind": int(EventKind.ARTICLE_PUBLISHED),
            "actor": a.author,
            "recipient": 0,
            "article_id": a.article_id,
            "title": f"Article {a.article_id}: notes on inboxes and outboxes",
            "at_ms": a.at_ms,
            "model": int(Model.PULL if a.event_id in pull else Model.PUSH),
            "hidden": 0,
        }
        for a in articles
    ]
    authors = [
        {
            "uid": author,
            "followers": follower_count(author),
            "big": int(hybrid and author <= BIG_AUTHORS),
            "has_pull": int(hybrid and author <= BIG_AUTHORS),
            "utime": T0,
        }
        for author in range(1, AUTHORS + OTHER_AUTHORS + 1)
    ]
    pushed = [a for a in articles if a.event_id not in pull]
    inbox = [
        {"owner": READER, "event_id": a.event_id, "at_ms": a.at_ms}
        for a in pushed
        if a.author <= AUTHORS
    ]
    for owner in range(1, BACKGROUND_OWNERS + 1):
        inbox += [
            {"owner": READER + owner, "event_id": a.event_id, "at_ms": a.at_ms}
            for a in rng.sample(pushed, BACKGROUND_ROWS)
        ]
    async with engine.begin() as conn:
        for table, rows in (
            (EventRow, events),
            (AuthorRow, authors),
            (InboxRow, inbox),
        ):
            for chunk in chunks(rows):
                await conn.execute(insert(table), chunk)
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("ANALYZE")
        else:
            for name in ("feed_events", "feed_inbox", "feed_authors"):
                await conn.exec_driver_sql(f"ANALYZE TABLE {name}")
    return len(inbox)


def service_over(
    sessions: SessionFactory, follows: Follows, *, threshold: int, batch: Callable[[], int]
) -> FeedService:
    """The production service over ``sessions`` with the in-memory follow service."""
    return FeedService(
        lambda: SqlUnitOfWork(sessions),
        followers=follows,
        big_author_followers=lambda: threshold,
        fanout_batch_size=batch,
        max_followees=2_000,
    )


async def check_same_pages(hybrid: FeedService, push: FeedService) -> None:
    """Both models must serve the reader the same first two pages."""
    cursors = ("", "")
    for page_no in (1, 2):
        a = await hybrid.get_feed(READER, cursors[0], PAGE)
        b = await push.get_feed(READER, cursors[1], PAGE)
        ids_a = [e.event_id for e in a.events]
        ids_b = [e.event_id for e in b.events]
        if ids_a != ids_b or len(ids_a) != PAGE:
            raise CheckFailed(f"page {page_no} differs: hybrid {ids_a} vs push-only {ids_b}")
        if page_no == 1 and not any(e.actor <= BIG_AUTHORS for e in a.events):
            raise CheckFailed("no big author on the first page: the merge is not exercised")
        cursors = (a.next_cursor, b.next_cursor)


async def measure_reads(hybrid: FeedService, push: FeedService) -> tuple[list[float], list[float]]:
    """Seconds of each first-page read, hybrid and push-only (see the module)."""
    sides: dict[str, Callable[[], Awaitable[FeedPage]]] = {
        "hybrid": lambda: hybrid.get_feed(READER, "", PAGE),
        "push": lambda: push.get_feed(READER, "", PAGE),
    }
    for call in sides.values():
        for _ in range(WARM_UP):
            await call()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(ROUNDS):
        order = ["hybrid", "push"] if round_ % 2 == 0 else ["push", "hybrid"]
        for name in order:
            call = sides[name]
            for _ in range(PER_ROUND):
                started = time.perf_counter()
                await call()
                seconds[name].append(time.perf_counter() - started)
    return seconds["hybrid"], seconds["push"]


async def inbox_rows(engine: AsyncEngine, event_id: str) -> int:
    """Inbox rows of ``event_id``."""
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(InboxRow).where(InboxRow.event_id == event_id)
        return int((await conn.execute(stmt)).scalar_one())


class FanoutRunner:
    """Publications of the fan-out author on one database, each a new article."""

    def __init__(self, engine: AsyncEngine, follows: Follows) -> None:
        self._engine = engine
        self._sessions = session_factory(engine)
        self._follows = follows
        self._next_article = 50_000_000

    def _article(self) -> int:
        self._next_article += 1
        return self._next_article

    async def publish(self, batch: int) -> float:
        """Seconds of one publication fanned out in batches of ``batch`` (checked)."""
        service = service_over(
            self._sessions, self._follows, threshold=PUSH_ONLY_THRESHOLD, batch=lambda: batch
        )
        article = self._article()
        event = article_published(FANOUT_AUTHOR, article, f"Article {article}", T0 + article)
        started = time.perf_counter()
        model = await service.article_published(event)
        took = time.perf_counter() - started
        if model is not Model.PUSH:
            raise CheckFailed(f"the fan-out author's publication was {model}, not push")
        written = await inbox_rows(self._engine, event.event_id)
        if written != FANOUT_FOLLOWERS:
            raise CheckFailed(f"{event.event_id}: {written} inbox rows, not {FANOUT_FOLLOWERS}")
        return took

    async def floor(self, owners: list[int]) -> float:
        """Seconds to write the same rows in one transaction (see the module; checked)."""
        event_id = f"ap-{self._article()}"
        started = time.perf_counter()
        async with self._sessions() as session, session.begin():
            dao = FeedDAO(session)
            for start in range(0, len(owners), DEFAULT_BATCH):
                await dao.add_to_inboxes(owners[start : start + DEFAULT_BATCH], event_id, T0)
        took = time.perf_counter() - started
        written = await inbox_rows(self._engine, event_id)
        if written != len(owners):
            raise CheckFailed(f"floor {event_id}: {written} inbox rows, not {len(owners)}")
        return took


async def measure_fanout(engine: AsyncEngine, follows: Follows) -> dict[str, float]:
    """Inbox rows/s of each batch size and of the floor (median of alternating rounds)."""
    owners = list(range(FOLLOWER_BASE, FOLLOWER_BASE + FANOUT_FOLLOWERS))
    follows.set_followers(FANOUT_AUTHOR, owners)
    runner = FanoutRunner(engine, follows)
    sides: dict[str, Callable[[], Awaitable[float]]] = {
        f"batch {batch}": partial(runner.publish, batch) for batch in BATCHES
    }
    sides["floor"] = lambda: runner.floor(owners)
    await runner.publish(DEFAULT_BATCH)  # warm-up: the author's row, the statements
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(FANOUT_ROUNDS):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(await sides[name]())
    return {name: FANOUT_FOLLOWERS / statistics.median(took) for name, took in seconds.items()}


async def measure(backend: Backend, articles: list[Published]) -> bool:
    """Both measures on one database; prints them; True if the read goal is met."""
    for url in (backend.hybrid_url, backend.push_url):
        await upgrade_async("feed", url)
    hybrid_engine = create_engine(backend.hybrid_url)
    push_engine = create_engine(backend.push_url)
    try:
        started = time.perf_counter()
        hybrid_rows = await seed(hybrid_engine, articles, hybrid=True)
        push_rows = await seed(push_engine, articles, hybrid=False)
        print(
            f"{backend.name}: seeded {len(articles)} events, {hybrid_rows} inbox rows (hybrid) "
            f"and {push_rows} (push-only) in {time.perf_counter() - started:.1f}s"
        )
        follows = Follows(
            {READER: list(range(1, AUTHORS + 1))},
            {author: follower_count(author) for author in range(1, AUTHORS + 1)},
        )
        hybrid = service_over(
            session_factory(hybrid_engine),
            follows,
            threshold=THRESHOLD,
            batch=lambda: DEFAULT_BATCH,
        )
        push = service_over(
            session_factory(push_engine),
            follows,
            threshold=PUSH_ONLY_THRESHOLD,
            batch=lambda: DEFAULT_BATCH,
        )
        await check_same_pages(hybrid, push)
        started = time.perf_counter()
        hybrid_s, push_s = await measure_reads(hybrid, push)
        print(
            f"{backend.name}: first page of {PAGE}, {len(hybrid_s)} reads a side "
            f"({time.perf_counter() - started:.1f}s): p50 {ms(percentile(hybrid_s, 0.5))} hybrid "
            f"vs {ms(percentile(push_s, 0.5))} push-only; p99 {ms(percentile(hybrid_s, 0.99))} "
            f"vs {ms(percentile(push_s, 0.99))}"
        )
        met = True
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            ratio = percentile(hybrid_s, q) / percentile(push_s, q)
            goal = label == "p99"
            ok = ratio <= READ_GOAL
            met &= ok or not goal
            result(
                f"feed first page {label}, hybrid vs push-only ({backend.name})",
                ms(percentile(hybrid_s, q)),
                ms(percentile(push_s, q)),
                ratio,
                f"<= {READ_GOAL}" if goal else "",
                ok if goal else None,
            )
        started = time.perf_counter()
        rates = await measure_fanout(push_engine, follows)
        print(
            f"{backend.name}: fan-out of {FANOUT_FOLLOWERS} followers, median of "
            f"{FANOUT_ROUNDS} ({time.perf_counter() - started:.1f}s): "
            + ", ".join(f"{name} {rate:,.0f} rows/s" for name, rate in rates.items())
        )
        floor = rates.pop("floor")
        for name, rate in rates.items():
            result(
                f"feed fan-out {FANOUT_FOLLOWERS} followers, {name}"
                f"{' (default)' if name == f'batch {DEFAULT_BATCH}' else ''}"
                f" vs one-transaction floor ({backend.name})",
                f"{rate:,.0f} rows/s",
                f"{floor:,.0f} rows/s",
                rate / floor,
            )
        return met
    finally:
        await hybrid_engine.dispose()
        await push_engine.dispose()


async def run(mysql_server: str | None, scratch: Path) -> bool:
    """Every measure on every database; True if every goal is met."""
    articles = publications()
    started = time.perf_counter()
    met = await measure(
        Backend(
            "SQLite",
            f"sqlite+aiosqlite:///{scratch / 'feed-hybrid.db'}",
            f"sqlite+aiosqlite:///{scratch / 'feed-push.db'}",
        ),
        articles,
    )
    if mysql_server is not None:
        async with (
            scratch_database(mysql_server, prefix="webook_bench_feed") as hybrid_url,
            scratch_database(mysql_server, prefix="webook_bench_feed") as push_url,
        ):
            met &= await measure(Backend("MariaDB", hybrid_url, push_url), articles)
    verdict = "met" if met else "MISSED"
    print(
        f"read goal (hybrid p99 <= {READ_GOAL} x push-only): {verdict}; "
        f"took {time.perf_counter() - started:.1f}s"
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, measure, print; 2 on a failed check, else 0."""
    args = database_options(__doc__).parse_args(argv)
    return run_measures(partial(run, mysql_server(args)))


if __name__ == "__main__":
    sys.exit(main())
