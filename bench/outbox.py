"""Benchmark of the transactional outbox: what it adds to a publication, and how fast it drains.

Run ``python -m bench.outbox`` (``--mysql-url`` names the MariaDB/MySQL server; default
``mysql+asyncmy://root@127.0.0.1:3306``). A scratch SQLite file and a scratch MariaDB
database (created and dropped here) get the article service's migrations; Redis and a local
broker (tansu) are started in a temporary directory. Two measures, on each database:

1. **Publish latency, with the outbox vs without.** The article service's publish use case
   (:meth:`services.article.service.ArticleService.publish`) end to end through its real
   unit of work, repository and Redis caches, republishing ``ARTICLES`` existing articles
   (sanitising, row lock, author-store update, reader-copy upsert, commit, cache updates).
   Only the author directory and the popularity lookup, remote calls in production, are
   local stand-ins answering at once; the event loop is asyncio's, as the article process's.
   *With* is the production wiring: the ``ArticlePublished`` row is added to
   ``article_outbox`` in the transaction, and a commit signal is registered as the relay
   does in production (so the after-commit wake-up runs too). *Without* is
   :class:`UnitOfWorkWithoutOutbox`: the same unit of work whose event writer hands the
   event to a sink that drops it. It is the production class with one property overridden,
   so both sides run the same code but for the outbox row (the event message is still built,
   as the buffered producer needed it before the outbox); a flag on the production class
   would put a benchmark-only branch in the service. The sides alternate in rounds of
   ``PER_ROUND`` publications, which side goes first alternating too, so drift and other
   processes' load hit both alike, after ``WARM_UP`` publications each. p50 and p99 over all
   rounds are compared (goal: with <= 1.1 x without).
2. **Relay throughput.** ``RELAY_EVENTS`` pending rows over ``RELAY_KEYS`` keys (articles)
   are written to ``article_outbox``; an :class:`kit.outbox.OutboxRelay` with the
   production :class:`kit.outbox.KafkaOutboxPublisher` (``acks=all``; the local broker
   grants no producer ids, so the idempotent producer of prod mode is off) publishes them
   until every row is sent, once for each of ``RELAY_SETTINGS`` (batch size, scan limit,
   rounds in flight). Events/s count from the relay's start to the last row recorded as
   sent (the producer is connected and the topic created beforehand); the CPU time this
   process spent meanwhile is printed per event. Each run is checked: every row is marked
   sent, and the topic read back holds every event of the run, each key's in the order
   written (duplicates, allowed by at-least-once, are counted). Goal: >= 5,000 events/s on
   MariaDB with :class:`kit.outbox.RelayConfig`'s defaults.

The exit code is 1 if a goal is missed, 2 if a check fails. On a shared machine, compare
the ratios (both sides of each measured alike) rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message
from sqlalchemy import delete, func, select

from bench._databases import MYSQL_SERVER, CheckFailed, ms, percentile
from bench._report import result
from devstack.infra import ManagedProcess, free_port, kafka_process, redis_process
from kit.events import ProducerConfig, TopicSpec
from kit.migrations import upgrade_async
from kit.observability.tracing import configure_tracing
from kit.outbox import KafkaOutboxPublisher, Outbox, OutboxRelay, RelayConfig
from kit.outbox.metrics import PUBLISHED
from kit.redisx import create_redis
from kit.sql import SessionFactory, create_engine, scratch_database, session_factory
from services.article.domain import Popularity, tiered_ttl
from services.article.events import ARTICLE_PUBLISHED_TOPIC, KafkaArticleEvents
from services.article.repository import SqlUnitOfWork, article_outbox
from services.article.repository.cache import FirstPageCache, RedisPublishedArticleCache
from services.article.repository.dao import ArticleOutboxRow
from services.article.service import ArticleService, UnitOfWork
from webook.events.v1 import events_pb2

ARTICLES = 100
AUTHORS = 10
TITLE = "Token buckets on the read path"
CONTENT = "<p>A <b>token bucket</b> refills at a steady rate; a request takes a token.</p>" * 16
WARM_UP = 60
ROUNDS = 24
PER_ROUND = 40
LATENCY_GOAL = 1.1

RELAY_EVENTS = 20_000
RELAY_KEYS = 1_000
FILL_PER_TRANSACTION = 1_000
PARTITIONS = 3


@dataclass(frozen=True)
class RelaySetting:
    """The relay settings of one run."""

    batch_size: int
    scan_limit: int
    concurrency: int

    def config(self) -> RelayConfig:
        """The relay's configuration (defaults otherwise)."""
        return RelayConfig(
            batch_size=self.batch_size, scan_limit=self.scan_limit, concurrency=self.concurrency
        )

    def __str__(self) -> str:
        return f"batch {self.batch_size}, scan {self.scan_limit}, {self.concurrency} in flight"


DEFAULT = RelayConfig()
RELAY_SETTINGS = (
    RelaySetting(DEFAULT.batch_size, DEFAULT.scan_limit, DEFAULT.concurrency),
    RelaySetting(100, 1_000, DEFAULT.concurrency),
    RelaySetting(DEFAULT.batch_size, DEFAULT.scan_limit, 2),
)
"""The relay settings measured: :class:`RelayConfig`'s defaults first (the goal's row), then
the services' ``OUTBOX_BATCH_SIZE`` default of 100 rows, then two rounds in flight."""
RELAY_GOAL = 5_000.0
RELAY_DEADLINE_S = 120.0


class UnitOfWorkWithoutOutbox(SqlUnitOfWork):
    """The production unit of work with the outbox taken out: events are dropped, not
    written (the baseline of the latency measure)."""

    def __init__(self, sessions: SessionFactory, cache: FirstPageCache, outbox: Outbox) -> None:
        super().__init__(sessions, cache, outbox)
        self._dropped = KafkaArticleEvents(DroppedEvents())

    @property
    def events(self) -> KafkaArticleEvents:
        """An event writer whose events go nowhere."""
        return self._dropped


class DroppedEvents:
    """An event sink that drops everything (and says so)."""

    def publish(self, topic: str, key: int, event: Message) -> bool:
        """Drop ``event``."""
        return False


class InstantAuthors:
    """The author directory without the user service: every author is known at once."""

    async def names(self, user_ids: Sequence[int]) -> dict[int, str]:
        """A name per id."""
        return {user_id: f"author {user_id}" for user_id in user_ids}


class NoPopularity:
    """The popularity lookup without the interactive service: nobody is popular."""

    async def popularity(self, author_id: int, article_id: int) -> Popularity:
        """Zeros."""
        return Popularity()


class NoReads:
    """Read events go nowhere (publishing reports none)."""

    def article_read(self, article_id: int, user_id: int, *, at_ms: int) -> None:
        """Drop the read."""


@dataclass
class Backend:
    """One database the measures run on."""

    name: str
    url: str


@dataclass
class Latencies:
    """Publish latencies of both sides on one backend, in seconds."""

    with_outbox: list[float]
    without: list[float]

    def ratio(self, q: float) -> float:
        """With ÷ without at quantile ``q``."""
        return percentile(self.with_outbox, q) / percentile(self.without, q)


async def measure_publish(backend: Backend, redis_url: str) -> Latencies:
    """Alternating rounds of publications with and without the outbox on ``backend``."""
    engine = create_engine(backend.url)
    redis = create_redis(redis_url)
    try:
        sessions = session_factory(engine)
        first_pages = FirstPageCache(redis)
        outbox = article_outbox()
        outbox.commit_signal()  # as the production relay registers, so commits wake it

        def service(unit: type[SqlUnitOfWork]) -> ArticleService:
            def units() -> UnitOfWork:
                return unit(sessions, first_pages, outbox)

            return ArticleService(
                units,
                published_cache=RedisPublishedArticleCache(redis),
                authors=InstantAuthors(),
                popularity=NoPopularity(),
                ttl_policy=tiered_ttl(
                    base_s=600, popular_s=3600, followers_threshold=100, reads_threshold=100
                ),
                events=NoReads(),
            )

        sides = {"with": service(SqlUnitOfWork), "without": service(UnitOfWorkWithoutOutbox)}
        articles = [
            (author, await sides["without"].save(author, 0, TITLE, CONTENT))
            for author in range(1, AUTHORS + 1)
            for _ in range(ARTICLES // AUTHORS)
        ]
        samples: dict[str, list[float]] = {"with": [], "without": []}
        turn = 0

        async def publish_round(side: str, count: int, record: bool) -> None:
            nonlocal turn
            publish = sides[side].publish
            for _ in range(count):
                author, article_id = articles[turn % len(articles)]
                turn += 1
                started = time.perf_counter()
                await publish(author, article_id, TITLE, CONTENT)
                if record:
                    samples[side].append(time.perf_counter() - started)

        for side in ("without", "with"):
            await publish_round(side, WARM_UP, record=False)
        for round_ in range(ROUNDS):
            order = ("with", "without") if round_ % 2 == 0 else ("without", "with")
            for side in order:
                await publish_round(side, PER_ROUND, record=True)
        async with sessions() as session:
            recorded = await session.scalar(select(func.count()).select_from(ArticleOutboxRow))
        expected = WARM_UP + ROUNDS * PER_ROUND
        if recorded != expected:
            raise CheckFailed(
                f"{backend.name}: {recorded} outbox rows after {expected} publications with it"
            )
        return Latencies(samples["with"], samples["without"])
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()


@dataclass
class RelayRun:
    """One relay run: its settings, rate and what the checks saw."""

    setting: RelaySetting
    events: int
    seconds: float
    cpu_seconds: float
    duplicates: int

    @property
    def cpu_us_per_event(self) -> float:
        """This process's CPU time per event (relay, drivers, producer), in microseconds."""
        return self.cpu_seconds / self.events * 1e6

    @property
    def rate(self) -> float:
        """Events published per second."""
        return self.events / self.seconds


def published_count(outbox: str) -> float:
    """Rows this process's relays have had acknowledged for ``outbox`` (the metric)."""
    child = PUBLISHED.labels(outbox, ARTICLE_PUBLISHED_TOPIC)
    return sum(
        sample.value
        for metric in child.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def fill(sessions: SessionFactory, outbox: Outbox, run_id: str) -> None:
    """``RELAY_EVENTS`` pending ``ArticlePublished`` rows, key ``i % RELAY_KEYS + 1``; each
    event's ``utime_ms`` is its sequence number within its key and its ``author_name`` the
    run's id (both checked on the topic)."""
    for start in range(0, RELAY_EVENTS, FILL_PER_TRANSACTION):
        async with sessions() as session:
            for i in range(start, min(RELAY_EVENTS, start + FILL_PER_TRANSACTION)):
                key, sequence = i % RELAY_KEYS + 1, i // RELAY_KEYS
                outbox.add(
                    session,
                    ARTICLE_PUBLISHED_TOPIC,
                    key,
                    events_pb2.ArticlePublished(
                        article_id=key,
                        title=TITLE,
                        abstract="A token bucket refills at a steady rate.",
                        author_id=key % AUTHORS + 1,
                        author_name=run_id,
                        utime_ms=sequence,
                        at_ms=sequence,
                    ),
                )
            await session.commit()


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """The next offset of each partition of the published topic, as the broker reports it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # a metadata refresh
        partitions = [
            TopicPartition(ARTICLE_PUBLISHED_TOPIC, p)
            for p in sorted(consumer.partitions_for_topic(ARTICLE_PUBLISHED_TOPIC) or ())
        ]
        if len(partitions) != PARTITIONS:
            raise CheckFailed(f"the topic has {len(partitions)} partitions, not {PARTITIONS}")
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_back(bootstrap: str, since: dict[TopicPartition, int], run_id: str) -> int:
    """Read the topic from ``since`` until every event of run ``run_id`` arrived and the topic
    is quiet; check each key's events came in order; returns the duplicates.

    The end is found by content, not by the broker's end offsets, which the local broker
    was seen to report short of records it had acknowledged (by the last batches' worth);
    records of earlier runs (``since`` may be early for the same reason) are told apart by
    the run id.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    seen: dict[int, list[int]] = {}
    total = 0
    try:
        consumer.assign(list(since))
        for partition, offset in since.items():
            consumer.seek(partition, offset)
        deadline = time.monotonic() + RELAY_DEADLINE_S
        distinct: set[tuple[int, int]] = set()
        quiet = False
        while len(distinct) < RELAY_EVENTS or not quiet:
            if time.monotonic() > deadline:
                raise CheckFailed(f"the topic holds {len(distinct)} of {RELAY_EVENTS} events")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            quiet = not batches
            for records in batches.values():
                for record in records:
                    event = events_pb2.ArticlePublished.FromString(record.value or b"")
                    if event.author_name != run_id:
                        continue
                    if record.key != str(event.article_id).encode():
                        raise CheckFailed(f"record key {record.key!r} for {event.article_id}")
                    seen.setdefault(event.article_id, []).append(event.utime_ms)
                    distinct.add((event.article_id, event.utime_ms))
                    total += 1
    finally:
        await consumer.stop()
    per_key = RELAY_EVENTS // RELAY_KEYS
    for key in range(1, RELAY_KEYS + 1):
        first_seen = list(dict.fromkeys(seen.get(key, [])))
        if first_seen != list(range(per_key)):
            raise CheckFailed(f"key {key}: events {first_seen} not 0..{per_key - 1} in order")
    return total - RELAY_EVENTS


async def measure_relay(backend: Backend, bootstrap: str, setting: RelaySetting) -> RelayRun:
    """Fill the outbox, publish it all with one relay, check the result."""
    engine = create_engine(backend.url)
    try:
        sessions = session_factory(engine)
        outbox = article_outbox()
        async with sessions() as session:
            await session.execute(delete(ArticleOutboxRow))
            await session.commit()
        publisher = KafkaOutboxPublisher(
            ProducerConfig(
                bootstrap=bootstrap,
                topics=(TopicSpec(ARTICLE_PUBLISHED_TOPIC, PARTITIONS),),
                client_id="bench-outbox",
            )
        )
        relay = OutboxRelay(sessions, outbox, publisher, setting.config())
        try:
            # Connect the producer and create the topic before the clock starts.
            await fill_one(sessions, outbox)
            while await relay.run_once():
                pass
            since = await end_offsets(bootstrap)
            async with sessions() as session:
                await session.execute(delete(ArticleOutboxRow))
                await session.commit()
            run_id = uuid.uuid4().hex
            await fill(sessions, outbox, run_id)
            target = published_count(outbox.table_name) + RELAY_EVENTS
            started, cpu_started = time.perf_counter(), time.process_time()
            relay.start()
            deadline = started + RELAY_DEADLINE_S
            while published_count(outbox.table_name) < target:
                if time.perf_counter() > deadline:
                    raise CheckFailed(f"{backend.name}: the relay did not finish in time")
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        finally:
            await relay.stop()
        async with sessions() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(ArticleOutboxRow)
                .where(ArticleOutboxRow.sent_ms.is_(None))
            )
            sent = await session.scalar(
                select(func.count())
                .select_from(ArticleOutboxRow)
                .where(ArticleOutboxRow.sent_ms.is_not(None))
            )
        if pending or sent != RELAY_EVENTS:
            raise CheckFailed(f"{backend.name}: {sent} rows sent, {pending} pending")
        duplicates = await read_back(bootstrap, since, run_id)
        return RelayRun(setting, RELAY_EVENTS, seconds, cpu_seconds, duplicates)
    finally:
        await engine.dispose()


async def fill_one(sessions: SessionFactory, outbox: Outbox) -> None:
    """One pending row (the relay's warm-up)."""
    async with sessions() as session:
        outbox.add(session, ARTICLE_PUBLISHED_TOPIC, 0, events_pb2.ArticlePublished())
        await session.commit()


async def run(mysql_server: str, bootstrap: str, redis_url: str, scratch: Path) -> bool:
    """Both measures on both databases; prints them; True if every goal is met."""
    met = True
    async with scratch_database(mysql_server, prefix="webook_bench") as mariadb_url:
        backends = [
            Backend("SQLite", f"sqlite+aiosqlite:///{scratch / 'outbox.db'}"),
            Backend("MariaDB", mariadb_url),
        ]
        for backend in backends:
            await upgrade_async("article", backend.url)
        for backend in backends:
            started = time.perf_counter()
            latencies = await measure_publish(backend, redis_url)
            print(
                f"{backend.name}: publish p50 {ms(percentile(latencies.with_outbox, 0.5))} with "
                f"the outbox, {ms(percentile(latencies.without, 0.5))} without; p99 "
                f"{ms(percentile(latencies.with_outbox, 0.99))} / "
                f"{ms(percentile(latencies.without, 0.99))} ({len(latencies.with_outbox)} "
                f"publications a side, {time.perf_counter() - started:.1f}s)"
            )
            for label, q in (("p50", 0.5), ("p99", 0.99)):
                ratio = latencies.ratio(q)
                ok = ratio <= LATENCY_GOAL
                met &= ok
                result(
                    f"article publish {label}, with vs without outbox ({backend.name})",
                    ms(percentile(latencies.with_outbox, q)),
                    ms(percentile(latencies.without, q)),
                    ratio,
                    f"<= {LATENCY_GOAL}",
                    ok,
                )
        for backend in backends:
            runs: list[RelayRun] = []
            for setting in RELAY_SETTINGS:
                relay_run = await measure_relay(backend, bootstrap, setting)
                runs.append(relay_run)
                print(
                    f"{backend.name}: relay ({setting}): {relay_run.rate:6.0f} events/s "
                    f"({RELAY_EVENTS} events in {relay_run.seconds:.2f}s, "
                    f"{relay_run.cpu_us_per_event:.0f} us of this process's CPU an event, "
                    f"{relay_run.duplicates} duplicates)"
                )
            default = runs[0]
            for relay_run in runs:
                is_default = relay_run is default
                goal = is_default and backend.name == "MariaDB"
                ok = relay_run.rate >= RELAY_GOAL
                if goal:
                    met &= ok
                result(
                    f"outbox relay ({backend.name}; {relay_run.setting}"
                    f"{', default' if is_default else ''})",
                    f"{relay_run.rate:.0f} events/s",
                    "" if is_default else f"{default.rate:.0f} events/s",
                    None if is_default else relay_run.rate / default.rate,
                    f">= {RELAY_GOAL:.0f}/s" if goal else "",
                    ok if goal else None,
                )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    """Start Redis and a broker, measure, print, stop them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--mysql-url", default=MYSQL_SERVER, help="MariaDB/MySQL server URL")
    args = parser.parse_args(argv)
    # As the article process installs it (run_service): with no OTLP endpoint, spans are not
    # recorded, and the outbox's trace headers take their cheap path.
    configure_tracing("article")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        kafka_port, redis_port = free_port(), free_port()
        broker: ManagedProcess = kafka_process(kafka_port, scratch)
        redis: ManagedProcess = redis_process(redis_port, scratch)
        with broker, redis:
            try:
                met = asyncio.run(
                    run(
                        args.mysql_url,
                        f"127.0.0.1:{kafka_port}",
                        f"redis://127.0.0.1:{redis_port}/0",
                        scratch,
                    )
                )
            except CheckFailed as exc:
                sys.stderr.write(f"check failed: {exc}\n")
                return 2
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
