"""The outbox on real SQLite and MariaDB, the relay's claims, order and retries, and the
Kafka publisher against the session's broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from alembic.migration import MigrationContext
from alembic.operations import Operations
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from kit.events import ProducerConfig, TopicSpec, declared_topic
from kit.migrations import schema_drift
from kit.outbox import (
    KafkaOutboxPublisher,
    Outbox,
    OutboxRecord,
    OutboxRelay,
    OutboxRow,
    RelayConfig,
    UnknownTopic,
    outbox_model,
)
from kit.outbox.migration import create_outbox_table_v1, drop_outbox_table_v1
from kit.outbox.outbox import now_ms
from kit.sql import SessionFactory, create_engine, service_metadata, session_factory
from webook.events.v1 import events_pb2

pytestmark = pytest.mark.integration

TABLE = "kittest_outbox"
TOPIC = "webook.test.outbox"
DEADLINE_S = 60.0


class Base(DeclarativeBase):
    metadata = service_metadata()


KitTestOutboxRow = outbox_model(Base, TABLE)


def event(n: int) -> events_pb2.ArticleWithdrawn:
    return events_pb2.ArticleWithdrawn(article_id=n, author_id=1, at_ms=n)


@dataclass
class Db:
    engine: AsyncEngine
    sessions: SessionFactory
    outbox: Outbox


def _create(connection: Connection) -> None:
    with Operations.context(MigrationContext.configure(connection)):
        drop_if_exists = TABLE in connection.dialect.get_table_names(connection)
        if drop_if_exists:
            drop_outbox_table_v1(TABLE)
        create_outbox_table_v1(TABLE)


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Db]:
    """The outbox table created by the migration helper on a fresh database."""
    engine = create_engine(empty_database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_create)
    try:
        yield Db(engine, session_factory(engine), Outbox(KitTestOutboxRow))
    finally:
        await engine.dispose()


async def add_events(db: Db, keyed: list[tuple[str, int]]) -> None:
    async with db.sessions() as session:
        for key, n in keyed:
            db.outbox.add(session, TOPIC, key, event(n))
        await session.commit()


async def rows(db: Db) -> list[OutboxRow]:
    async with db.sessions() as session:
        found = await session.scalars(select(KitTestOutboxRow).order_by(KitTestOutboxRow.id))
        return list(found.all())


class Recorder:
    """Records what it published; fails the records ``fail`` names once each."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.published: list[tuple[bytes, int]] = []
        self.attempts: list[int] = []
        self._fail = set(fail or ())
        self.closed = False
        self.loss: str | None = None

    async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
        assert len({record.key for record in records}) == len(records), "a key twice in a wave"
        errors: list[Exception | None] = []
        for record in records:
            self.attempts.append(record.id)
            if record.id in self._fail:
                self._fail.discard(record.id)
                errors.append(ConnectionError("broker unreachable (injected)"))
                continue
            self.published.append(
                (record.key, events_pb2.ArticleWithdrawn.FromString(record.payload).article_id)
            )
            errors.append(None)
        return errors

    def lost_acknowledged(self) -> str | None:
        loss, self.loss = self.loss, None
        return loss

    async def close(self) -> None:
        self.closed = True


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def test_the_migration_creates_what_the_model_describes(db: Db) -> None:
    async with db.engine.connect() as conn:
        drift = await conn.run_sync(lambda c: schema_drift(c, Base.metadata, "kittest"))
    assert drift == []


async def test_an_event_is_recorded_if_and_only_if_its_transaction_commits(db: Db) -> None:
    async with db.sessions() as session:
        db.outbox.add(session, TOPIC, 1, event(1))
        await session.rollback()
    assert await rows(db) == []
    async with db.sessions() as session:
        db.outbox.bound(session).publish(TOPIC, 2, event(2))
        await session.commit()
    [row] = await rows(db)
    assert (row.topic, row.event_key, row.sent_ms, row.attempts) == (TOPIC, "2", None, 0)
    assert events_pb2.ArticleWithdrawn.FromString(row.payload) == event(2)


async def test_the_outbox_refuses_undeclared_topics_and_payloads(db: Db) -> None:
    declared = declared_topic(events_pb2.Topic, events_pb2.TOPIC_ARTICLE_WITHDRAWN)
    strict = Outbox(KitTestOutboxRow, topics=[declared])
    async with db.sessions() as session:
        strict.add(session, declared.name, 1, event(1))
        with pytest.raises(UnknownTopic):
            strict.add(session, TOPIC, 1, event(1))
        with pytest.raises(UnknownTopic):
            strict.add(session, declared.name, 1, events_pb2.ArticleRead(article_id=1))


async def test_the_relay_publishes_in_order_per_key_and_marks_rows_sent(db: Db) -> None:
    await add_events(db, [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)])
    recorder = Recorder()
    relay = OutboxRelay(db.sessions, db.outbox, recorder, RelayConfig(batch_size=2, scan_limit=10))
    while await relay.run_once():
        pass
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for key, n in recorder.published:
        per_key[key].append(n)
    assert dict(per_key) == {b"a": [1, 3, 6], b"b": [2, 5], b"c": [4]}
    assert all(row.sent_ms is not None and row.claimed_by is None for row in await rows(db))


async def test_a_failed_row_is_retried_after_back_off_and_holds_back_its_key(db: Db) -> None:
    await add_events(db, [("a", 1), ("b", 2), ("a", 3)])
    first = (await rows(db))[0].id
    clock = [now_ms()]
    config = RelayConfig(retry_backoff_s=2.0, retry_backoff_max_s=3.0)
    recorder = Recorder(fail={first})
    relay = OutboxRelay(db.sessions, db.outbox, recorder, config, clock=lambda: clock[0])

    await relay.run_once()
    assert recorder.published == [(b"b", 2)]
    failed, _, held = await rows(db)
    assert (failed.attempts, failed.next_attempt_ms) == (1, clock[0] + 2000)
    assert "injected" in (failed.last_error or "")
    assert (held.sent_ms, held.claimed_by) == (None, None)

    await relay.run_once()  # not due yet: neither a's first row nor the one behind it goes
    assert recorder.published == [(b"b", 2)]

    clock[0] += 2000
    await relay.run_once()
    assert recorder.published == [(b"b", 2), (b"a", 1), (b"a", 3)]
    assert config.backoff_ms(1) == 2000
    assert config.backoff_ms(5) == 3000


async def test_a_failed_row_holds_back_its_key_for_other_relays_too(db: Db) -> None:
    await add_events(db, [("a", 1), ("a", 2)])
    first = (await rows(db))[0].id
    async with db.sessions() as session:  # as a relay that failed it would leave it
        await session.execute(
            update(KitTestOutboxRow)
            .where(KitTestOutboxRow.id == first)
            .values(attempts=1, next_attempt_ms=now_ms() + 3_600_000)
        )
        await session.commit()
    recorder = Recorder()
    assert await OutboxRelay(db.sessions, db.outbox, recorder).run_once() == 0
    assert recorder.published == []


async def test_two_relays_on_one_database_never_publish_a_row_twice(db: Db) -> None:
    keys = ["k0", "k1", "k2", "k3", "k4"]
    await add_events(db, [(keys[n % len(keys)], n) for n in range(150)])
    in_flight: set[int] = set()
    overlaps: list[int] = []
    published: list[tuple[str, str, int]] = []

    class Shared:
        def __init__(self, name: str) -> None:
            self.name = name

        async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
            for record in records:
                if record.id in in_flight:
                    overlaps.append(record.id)
                in_flight.add(record.id)
            for _ in range(3):  # let the other relay run while this one publishes
                await asyncio.sleep(0)
            for record in records:
                in_flight.discard(record.id)
                n = events_pb2.ArticleWithdrawn.FromString(record.payload).article_id
                published.append((self.name, record.key.decode(), n))
            return [None] * len(records)

        def lost_acknowledged(self) -> str | None:
            return None

        async def close(self) -> None:
            pass

    config = RelayConfig(batch_size=7, scan_limit=40, poll_interval_s=0.05)
    relays = [OutboxRelay(db.sessions, db.outbox, Shared(name), config) for name in "xy"]
    for relay in relays:
        relay.start()

    async def all_sent() -> bool:
        async with db.sessions() as session:
            pending = await session.scalar(
                select(func.count()).where(KitTestOutboxRow.sent_ms.is_(None))
            )
            return pending == 0

    try:
        await eventually(all_sent, "every row is sent")
    finally:
        for relay in relays:
            await relay.stop()
    assert overlaps == []
    numbers = [n for _, _, n in published]
    assert sorted(numbers) == list(range(150))  # each row exactly once
    for key in keys:
        of_key = [n for _, k, n in published if k == key]
        assert of_key == sorted(of_key), key


async def test_a_relay_killed_before_publishing_loses_nothing(db: Db) -> None:
    await add_events(db, [("a", 1), ("b", 2), ("a", 3)])
    never = asyncio.Event()

    class Hung:
        async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
            await never.wait()
            return [None] * len(records)

        def lost_acknowledged(self) -> str | None:
            return None

        async def close(self) -> None:
            pass

    config = RelayConfig(lease_s=600.0, publish_timeout_s=300.0, stop_timeout_s=0.0)
    crashed = OutboxRelay(db.sessions, db.outbox, Hung(), config)
    crashed.start()

    async def claimed() -> bool:
        return all(row.claimed_by is not None for row in await rows(db))

    await eventually(claimed, "the first relay claimed every row")
    await crashed.stop()  # cancelled mid-publish: nothing recorded, the lease still held

    recorder = Recorder()
    early = OutboxRelay(db.sessions, db.outbox, recorder, config)
    assert await early.run_once() == 0  # the lease keeps another relay off the rows

    later = OutboxRelay(db.sessions, db.outbox, recorder, config, clock=lambda: now_ms() + 601_000)
    while await later.run_once():
        pass
    assert sorted(recorder.published) == [(b"a", 1), (b"a", 3), (b"b", 2)]
    assert [n for key, n in recorder.published if key == b"a"] == [1, 3]


async def test_sent_rows_are_deleted_after_the_retention(db: Db) -> None:
    await add_events(db, [("a", 1)])
    clock = [now_ms()]
    relay = OutboxRelay(
        db.sessions,
        db.outbox,
        Recorder(),
        RelayConfig(retention_s=10.0, cleanup_interval_s=1.0),
        clock=lambda: clock[0],
    )
    await relay.run_once()
    assert [row.sent_ms for row in await rows(db)] == [clock[0]]
    clock[0] += 11_000
    await relay.run_once()
    assert await rows(db) == []


async def test_the_kafka_publisher_delivers_key_payload_and_trace_headers(
    db: Db, kafka_bootstrap: str
) -> None:
    topic = f"webook.test.outbox-{uuid.uuid4().hex[:8]}"
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with db.sessions() as session:
        db.outbox.add(session, topic, 42, event(42), [("traceparent", traceparent.encode())])
        await session.commit()
    publisher = KafkaOutboxPublisher(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(topic, 1),))
    )
    relay = OutboxRelay(db.sessions, db.outbox, publisher)
    try:
        assert await relay.run_once() == 1
    finally:
        await relay.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), DEADLINE_S)
    finally:
        await consumer.stop()
    assert record.key == b"42"
    assert events_pb2.ArticleWithdrawn.FromString(record.value) == event(42)
    assert dict(record.headers)["traceparent"] == traceparent.encode()
    assert all(row.sent_ms is not None for row in await rows(db))


async def test_the_scan_reads_past_blocked_rows_in_pages_up_to_the_scan_limit(db: Db) -> None:
    # a's first row waits for its retry and holds back a's later rows; with batches of 2,
    # pages of 2, 4 and 4 rows reach b's row (the 10th); once b is sent, c's row is the
    # 11th pending row, past the scan limit.
    await add_events(db, [("a", n) for n in range(1, 10)] + [("b", 10), ("a", 11), ("c", 12)])
    first = (await rows(db))[0].id
    async with db.sessions() as session:
        await session.execute(
            update(KitTestOutboxRow)
            .where(KitTestOutboxRow.id == first)
            .values(attempts=1, next_attempt_ms=now_ms() + 3_600_000)
        )
        await session.commit()
    recorder = Recorder()
    relay = OutboxRelay(db.sessions, db.outbox, recorder, RelayConfig(batch_size=2, scan_limit=10))
    assert await relay.run_once() == 1
    assert recorder.published == [(b"b", 10)]
    assert await relay.run_once() == 0
    assert recorder.published == [(b"b", 10)]


async def test_a_publisher_that_raises_fails_the_whole_wave_and_it_is_retried(db: Db) -> None:
    await add_events(db, [("a", 1), ("b", 2), ("a", 3)])
    clock = [now_ms()]

    class Unreachable(Recorder):
        async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
            self.attempts.extend(record.id for record in records)
            raise ConnectionError("no broker (injected)")

    failing = Unreachable()
    config = RelayConfig(retry_backoff_s=1.0)
    relay = OutboxRelay(db.sessions, db.outbox, failing, config, clock=lambda: clock[0])
    assert await relay.run_once() == 3
    first_a, b, second_a = await rows(db)
    assert len(failing.attempts) == 2  # a's second row never went: a stopped at its first
    assert (first_a.attempts, b.attempts, second_a.attempts) == (1, 1, 0)
    assert "no broker" in (first_a.last_error or "")
    assert all(row.claimed_by is None and row.sent_ms is None for row in (first_a, b, second_a))

    clock[0] += 1000
    recorder = Recorder()
    retry = OutboxRelay(db.sessions, db.outbox, recorder, config, clock=lambda: clock[0])
    while await retry.run_once():
        pass
    assert recorder.published == [(b"a", 1), (b"b", 2), (b"a", 3)]


async def test_a_key_goes_one_record_per_wave_and_stops_at_its_first_failure(db: Db) -> None:
    await add_events(db, [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5), ("b", 6)])
    b_second = (await rows(db))[4].id
    waves: list[list[int]] = []

    class Waves(Recorder):
        async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
            waves.append(
                [events_pb2.ArticleWithdrawn.FromString(r.payload).article_id for r in records]
            )
            return await super().publish(records)

    relay = OutboxRelay(db.sessions, db.outbox, Waves(fail={b_second}))
    assert await relay.run_once() == 6
    assert waves == [[1, 3], [2, 5], [4]]  # b stopped at 5; 6 stays pending behind it
    pending = [row for row in await rows(db) if row.sent_ms is None]
    assert [(row.attempts, row.claimed_by) for row in pending] == [(1, None), (0, None)]


async def test_rounds_in_flight_at_once_keep_each_keys_order_and_send_each_row_once(
    db: Db,
) -> None:
    keys = [f"k{n}" for n in range(8)]
    await add_events(db, [(keys[n % len(keys)], n) for n in range(240)])
    in_flight: set[str] = set()
    overlapping: list[str] = []
    published: list[tuple[str, int]] = []

    class Slow:
        async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
            for record in records:
                if record.key.decode() in in_flight:
                    overlapping.append(record.key.decode())
                in_flight.add(record.key.decode())
            for _ in range(5):  # let the other rounds claim meanwhile
                await asyncio.sleep(0)
            for record in records:
                in_flight.discard(record.key.decode())
                n = events_pb2.ArticleWithdrawn.FromString(record.payload).article_id
                published.append((record.key.decode(), n))
            return [None] * len(records)

        def lost_acknowledged(self) -> str | None:
            return None

        async def close(self) -> None:
            pass

    config = RelayConfig(batch_size=5, scan_limit=50, concurrency=3, poll_interval_s=0.05)
    relay = OutboxRelay(db.sessions, db.outbox, Slow(), config)
    relay.start()

    async def all_sent() -> bool:
        return all(row.sent_ms is not None for row in await rows(db))

    try:
        await eventually(all_sent, "every row is sent")
    finally:
        await relay.stop()
    assert overlapping == []  # never two rounds publishing one key at once
    assert sorted(n for _, n in published) == list(range(240))
    for key in keys:
        of_key = [n for k, n in published if k == key]
        assert of_key == sorted(of_key), key


async def test_the_gauges_are_refreshed_at_most_once_an_interval(db: Db) -> None:
    def pending() -> float | None:
        return REGISTRY.get_sample_value("webook_outbox_pending", {"outbox": TABLE})

    await add_events(db, [("a", 1)])
    clock = [now_ms()]
    config = RelayConfig(gauge_interval_s=10.0)
    relay = OutboxRelay(db.sessions, db.outbox, Hold(), config, clock=lambda: clock[0])
    await relay.run_once()
    assert pending() == 1
    await add_events(db, [("b", 2)])
    clock[0] += 5_000
    await relay.run_once()
    assert pending() == 1  # not refreshed yet
    clock[0] += 5_000
    await relay.run_once()
    assert pending() == 2


class Hold(Recorder):
    """Fails every record (so rows stay pending and the gauges have something to count)."""

    async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
        return [ConnectionError("held (injected)") for _ in records]


async def test_a_commit_that_adds_rows_wakes_the_relay(db: Db) -> None:
    await add_events(db, [("a", 1)])
    recorder = Recorder()
    relay = OutboxRelay(db.sessions, db.outbox, recorder, RelayConfig(poll_interval_s=3600.0))
    relay.start()

    def published(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(recorder.published) == count

        return check

    try:
        await eventually(published(1), "the first round published the first row")
        await add_events(db, [("b", 2)])  # the relay now waits for an hour or a commit
        await eventually(published(2), "the commit woke the relay")
    finally:
        await relay.stop()
    assert recorder.published == [(b"a", 1), (b"b", 2)]


async def test_the_kafka_publisher_fails_a_refused_record_alone(
    db: Db, kafka_bootstrap: str
) -> None:
    topic = f"webook.test.outbox-{uuid.uuid4().hex[:8]}"
    too_large = events_pb2.ArticlePublished(article_id=1, content="x" * 1_100_000)
    async with db.sessions() as session:
        db.outbox.add(session, topic, 1, too_large)
        db.outbox.add(session, topic, 2, event(2))
        await session.commit()
    publisher = KafkaOutboxPublisher(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(topic, 1),))
    )
    relay = OutboxRelay(db.sessions, db.outbox, publisher)
    try:
        assert await relay.run_once() == 2
    finally:
        await relay.stop()
    refused, sent = await rows(db)
    assert (refused.sent_ms, refused.attempts) == (None, 1)
    assert "TooLarge" in (refused.last_error or "")
    assert sent.sent_ms is not None


async def test_staged_rows_go_with_their_own_transaction_only(db: Db) -> None:
    async with db.sessions() as session:
        db.outbox.add(session, TOPIC, "a", event(1))
        await session.rollback()
        for n in (2, 3, 4):
            db.outbox.add(session, TOPIC, "b", event(n))
        await session.commit()
        db.outbox.add(session, TOPIC, "c", event(5))  # the session closes without a commit
    async with db.sessions() as session:
        await session.commit()  # a later session of the pool commits nothing of it
    assert [(row.event_key, row.payload) for row in await rows(db)] == [
        ("b", event(n).SerializeToString()) for n in (2, 3, 4)
    ]


class ElsewhereBase(DeclarativeBase):
    metadata = service_metadata()


MissingOutboxRow = outbox_model(ElsewhereBase, "kittest_outbox_never_created")


async def test_an_insert_the_database_refuses_fails_the_commit_and_takes_the_change(
    db: Db,
) -> None:
    missing = Outbox(MissingOutboxRow)
    async with db.sessions() as session:
        db.outbox.add(session, TOPIC, "a", event(1))
        missing.add(session, TOPIC, "a", event(2))
        with pytest.raises(DBAPIError, match="kittest_outbox_never_created") as refused:
            await session.commit()
        assert "parameters hidden" in str(refused.value)  # payloads stay out of the logs
        await session.rollback()
    assert await rows(db) == []
    await add_events(db, [("b", 3)])  # the pool's connection still works
    assert [row.event_key for row in await rows(db)] == ["b"]


async def test_the_outbox_refuses_rows_inside_a_savepoint(db: Db) -> None:
    async with db.sessions() as session:
        async with session.begin_nested():
            with pytest.raises(RuntimeError, match="savepoint"):
                db.outbox.add(session, TOPIC, "a", event(1))
        await session.commit()
    assert await rows(db) == []


async def test_a_broker_that_lost_acknowledged_records_gets_the_replay_window_again(
    db: Db,
) -> None:
    await add_events(db, [("a", 1)])
    clock = [now_ms()]  # after the rows' own times: they are due
    recorder = Recorder()
    relay = OutboxRelay(
        db.sessions,
        db.outbox,
        recorder,
        RelayConfig(replay_window_s=60.0),
        clock=lambda: clock[0],
    )
    assert await relay.run_once() == 1
    clock[0] += 120_000  # row 1 is now older than the window
    await add_events(db, [("a", 2), ("b", 3)])
    await relay.run_once()
    replayed = REGISTRY.get_sample_value("webook_outbox_replayed_total", {"outbox": TABLE}) or 0

    recorder.loss = "offsets of partition 0 of webook.test.outbox went back"
    await add_events(db, [("a", 4)])
    await relay.run_once()  # publishes 4, hears of the loss, makes 2, 3 and 4 pending again
    assert [row.sent_ms is None for row in await rows(db)] == [False, True, True, True]
    while await relay.run_once():
        pass
    first_time = [(b"a", 1), (b"a", 2), (b"b", 3), (b"a", 4)]
    assert recorder.published == [*first_time, (b"a", 2), (b"b", 3), (b"a", 4)]
    assert all(row.sent_ms is not None for row in await rows(db))
    after = REGISTRY.get_sample_value("webook_outbox_replayed_total", {"outbox": TABLE})
    assert after == replayed + 3


async def test_without_a_replay_window_a_loss_is_only_reported(db: Db) -> None:
    recorder = Recorder()
    relay = OutboxRelay(db.sessions, db.outbox, recorder, RelayConfig())
    await add_events(db, [("a", 1)])
    recorder.loss = "topics ['webook.test.outbox'] had to be created again"
    assert await relay.run_once() == 1
    assert await relay.run_once() == 0
    assert recorder.published == [(b"a", 1)]


def test_the_replay_window_must_fit_in_the_retention() -> None:
    with pytest.raises(ValueError, match="replay_window_s"):
        RelayConfig(replay_window_s=120.0, retention_s=60.0)
    with pytest.raises(ValueError, match="replay_window_s"):
        RelayConfig(replay_window_s=-1.0)


@pytest.mark.parametrize("partitions_after", [None, 3], ids=["recreated-by-us", "repartitioned"])
async def test_the_kafka_publisher_notices_a_topic_that_started_anew(
    db: Db, kafka_bootstrap: str, partitions_after: int | None
) -> None:
    topic = f"webook.test.outbox-{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(topic, 1)
    publisher = KafkaOutboxPublisher(ProducerConfig(bootstrap=kafka_bootstrap, topics=(spec,)))

    def records(first: int, count: int) -> list[OutboxRecord]:
        return [
            OutboxRecord(n, topic, b"k", event(n).SerializeToString(), [], 0)
            for n in range(first, first + count)
        ]

    try:
        assert await publisher.publish(records(1, 3)) == [None] * 3
        assert await publisher.publish(records(4, 1)) == [None]
        assert publisher.lost_acknowledged() is None  # offsets only grew

        # What a broker that keeps its logs in memory does on restart: the log starts anew.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            if partitions_after is not None:  # as tansu does when a client asks for it
                await admin.create_topics([TopicSpec(topic, partitions_after).new_topic()])
        finally:
            await admin.close()

        async def delivered_again() -> bool:
            return await publisher.publish(records(5, 1)) == [None]

        await eventually(delivered_again, "a record is acknowledged by the new log")
        loss = publisher.lost_acknowledged()
        assert loss is not None
        assert topic in loss
        assert publisher.lost_acknowledged() is None  # reported once
    finally:
        await publisher.close()
