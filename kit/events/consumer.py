"""A Kafka batch consumer with at-least-once delivery.

A :class:`BatchConsumer` joins one consumer group for the topics of its handler table
(topic → :class:`TopicHandler`: how to decode a record's value and how to apply a batch of
decoded events). Its loop:

1. collects up to ``max_batch`` records, waiting at most ``max_wait_s``;
2. decodes each record with its topic's decoder; records that do not decode are skipped,
   logged and counted (``result="undecodable"``) and are committed past like the others;
3. hands each topic's events to its handler as one batch, inside a CONSUMER span linked to
   every producer span found in the records' headers (read only when that span is
   recorded); a handler that raises is retried with exponential backoff (its events are
   counted ``result="failed"`` per attempt) and nothing is committed until every topic of
   the batch has been applied;
4. commits the next offset of every partition in the batch, then checks that the broker
   still holds the batch's last record of each partition (:mod:`kit.events.logcheck`): a
   broker that restarted empty takes the commit into a new log, which is then read again
   from its beginning rather than from an offset of the old one.

So an event is applied at least once. A crash (or a lost partition) between 3 and 4
re-delivers that one batch, so handlers must tolerate, or bound, duplicates; a graceful
:meth:`BatchConsumer.stop` finishes and commits the batch in progress first. Handlers should
raise only for transient failures: a batch that can never be applied blocks its partitions.

**Caught up.** Once it owns partitions, the consumer takes each one's end offset once,
its high watermark at start: the one the first fetch response after the assignment
reports (exact on every broker, where tansu answers a ListOffsets for the latest offset
with the last record batch's base offset plus one); a partition assigned later gets its
mark when first owned. It is :attr:`~BatchConsumer.caught_up` when its committed offsets
reached the mark of every partition it owns: everything published before it started has
been applied. A partition with nothing to read (empty, or every record expired) counts as
reached. The flag never goes back: a later lag is what ``webook_kafka_consumer_lag`` is
for. A process uses :meth:`~BatchConsumer.wait_caught_up` as a readiness condition
(:meth:`kit.grpcx.server.ServiceRunner.ready_when`).

Every ``lag_interval_s`` the consumer re-creates missing topics (brokers that lose their data
on restart) and refreshes ``webook_kafka_consumer_lag``: end offsets (one ListOffsets
request) minus the offsets committed for the partitions it owns. Connection trouble of any
kind closes the ``aiokafka`` consumer and starts a new one after a backoff, so the service
that runs the consumer keeps serving while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace

from kit.events.logcheck import LogAnchor, LogChecker
from kit.events.metrics import BATCH_SIZE, COMMIT_FAILURES, CONSUMED, CONSUMER_LAG, LOG_RESETS
from kit.events.security import KafkaSecurity
from kit.events.topics import TopicAdmin, TopicSpec, check_replication
from kit.events.tracing import TRACER_NAME, producer_links

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

_COMMIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ConsumedEvent(Generic[T]):
    """A decoded record with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    payload: T


@dataclass(frozen=True, slots=True)
class TopicHandler(Generic[T]):
    """How one topic's records are decoded and applied.

    ``decode`` raises (anything) for a record that is not a valid event: it is skipped.
    ``handle`` applies a batch of events (in offset order per partition) or raises to have
    the batch retried.
    """

    decode: Callable[[bytes], T]
    handle: Callable[[Sequence[ConsumedEvent[T]]], Awaitable[None]]


def parse_event(message_type: type[M], value: bytes | None) -> M:
    """A record value parsed as ``message_type``; ``ValueError`` (the consumer skips the
    record and counts it undecodable) when there is no value or it does not parse."""
    if value is None:
        raise ValueError("record has no value")
    try:
        return message_type.FromString(value)
    except DecodeError as exc:
        raise ValueError(f"not a {message_type.__name__}: {exc}") from exc


def protobuf_decoder(message_type: type[M]) -> Callable[[bytes], M]:
    """A decoder parsing a record value as ``message_type`` (:func:`parse_event`)."""

    def decode(value: bytes) -> M:
        return parse_event(message_type, value)

    return decode


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How a :class:`BatchConsumer` connects, batches and retries.

    Attributes:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        group_id: the consumer group; offsets are committed for it.
        max_batch / max_wait_s: a batch closes at this many records or after this long.
        session_timeout_ms / heartbeat_interval_ms: group membership (joins take about half
            the session timeout on tansu).
        retry_backoff_s / retry_backoff_max_s: pauses between handler retries and
            reconnections.
        lag_interval_s: how often lag is refreshed and topics are re-checked.
        manage_topics / topic_partitions: create the handler topics if missing, with this
            many partitions.
        topic_replication_factor / topic_min_insync_replicas: the replication of the topics
            created (:class:`~kit.events.topics.TopicSpec`; ``None``: the broker's default
            ``min.insync.replicas``).
        auto_offset_reset: where a group without committed offsets starts.
        verify_logs: after each commit, check that the broker still holds the log read
            (one fetch per commit; see :mod:`kit.events.logcheck`). Off only for brokers
            that never lose an acknowledged log.
        security: how the consumer and its topic admin authenticate to the brokers.
    """

    bootstrap: str
    group_id: str
    max_batch: int = 100
    max_wait_s: float = 1.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 10.0
    lag_interval_s: float = 10.0
    manage_topics: bool = True
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int | None = None
    auto_offset_reset: str = "earliest"
    verify_logs: bool = True
    request_timeout_ms: int = 5_000
    metadata_max_age_ms: int = 30_000
    # A broker answers one request per connection at a time: a long-polling fetch delays
    # the ListOffsets of a lag refresh by up to this long.
    fetch_max_wait_ms: int = 100
    stop_timeout_s: float = 10.0
    client_id: str = "webook"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def topic_spec(self, name: str) -> TopicSpec:
        """How topic ``name`` is created when it is missing."""
        return TopicSpec(
            name,
            self.topic_partitions,
            self.topic_replication_factor,
            self.topic_min_insync_replicas,
        )

    def __post_init__(self) -> None:
        # Refused here rather than by the background loop's first topic check.
        if self.topic_partitions < 1:
            raise ValueError(f"topic_partitions must be at least 1, got {self.topic_partitions}")
        min_insync = self.topic_min_insync_replicas
        check_replication(self.topic_replication_factor, 1 if min_insync is None else min_insync)


class _Reconnect(Exception):
    """Raised inside the loop to replace the ``aiokafka`` consumer."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._owner._forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._owner._assigned(assigned)


class BatchConsumer:
    """Consumes the handler table's topics in batches; :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        config: ConsumerConfig,
        handlers: Mapping[str, TopicHandler[Any]],
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one topic handler")
        self._config = config
        self._handlers = dict(handlers)
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._admin = TopicAdmin(
            config.bootstrap,
            request_timeout_ms=config.request_timeout_ms,
            security=config.security,
        )
        self._specs = [config.topic_spec(name) for name in self._handlers]
        self._log_checker = LogChecker(
            config.bootstrap,
            client_id=config.client_id,
            request_timeout_ms=config.request_timeout_ms,
            security=config.security,
        )
        self._committed: dict[TopicPartition, int] = {}
        self._partitions: frozenset[TopicPartition] = frozenset()
        # Counts (re)assignments and revocations: a batch fetched before the latest one is
        # applied but not committed (see _commit).
        self._assignment_epoch = 0
        self._has_partitions = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_refresh = 0.0
        # True while a batch is being applied and committed: stop() lets it finish.
        self._applying = False
        # Caught up: each owned partition's high watermark when first fetched (0: nothing
        # to read), the partitions whose committed offset was asked of the broker since they
        # were assigned, and when consuming started.
        self._start_marks: dict[TopicPartition, int] = {}
        self._commits_asked: set[TopicPartition] = set()
        self._caught_up = asyncio.Event()
        self._started_at = 0.0

    @property
    def group_id(self) -> str:
        """The consumer group."""
        return self._config.group_id

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer owns right now."""
        return self._partitions

    @property
    def caught_up(self) -> bool:
        """Whether everything published before the consumer started has been applied and
        committed (see the module docstring); once true, stays true."""
        return self._caught_up.is_set()

    def start(self) -> None:
        """Start consuming in the background (inside the running event loop)."""
        if self._task is None:
            self._stop_requested.clear()
            self._started_at = asyncio.get_running_loop().time()
            self._task = asyncio.create_task(self._run(), name=f"kafka-consumer-{self.group_id}")

    async def wait_caught_up(self, within_s: float | None = None) -> bool:
        """Wait until :attr:`caught_up` (forever by default); ``False`` after ``within_s``."""
        try:
            await asyncio.wait_for(self._caught_up.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def wait_assigned(self, within_s: float) -> bool:
        """Wait until the group gave this consumer partitions; ``False`` after ``within_s``."""
        try:
            await asyncio.wait_for(self._has_partitions.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Finish and commit the batch in progress, leave the group, release connections.

        Waiting for records or for a group join is abandoned at once; a batch being applied
        gets ``stop_timeout_s`` to finish and commit, after which it is cancelled and
        delivered again to whoever consumes its partitions next.
        """
        self._stop_requested.set()
        task, self._task = self._task, None
        if task is not None:
            if not self._applying:
                task.cancel()
            done, _ = await asyncio.wait([task], timeout=self._config.stop_timeout_s)
            if not done:
                logger.warning("kafka consumer did not stop in time; cancelling")
                task.cancel()
                await asyncio.wait([task])
        await self._admin.close()
        await self._log_checker.close()

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._config.retry_backoff_s
        while not self._stop_requested.is_set():
            consumer: AIOKafkaConsumer | None = None
            try:
                if self._config.manage_topics:
                    await self._admin.ensure(self._specs)
                consumer = self._new_consumer()
                await consumer.start()
                consumer.subscribe(list(self._handlers), listener=_Rebalance(self))
                backoff = self._config.retry_backoff_s
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "kafka consumer failed; reconnecting",
                    extra={"group": self.group_id, "error": repr(exc)},
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, self._config.retry_backoff_max_s)
            finally:
                self._forget(self._partitions)
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()

    def _new_consumer(self) -> AIOKafkaConsumer:
        config = self._config
        return AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            request_timeout_ms=max(config.request_timeout_ms, config.session_timeout_ms + 1000),
            metadata_max_age_ms=config.metadata_max_age_ms,
            max_poll_records=config.max_batch,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            **config.security.client_options(),
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        loop = asyncio.get_running_loop()
        self._next_refresh = loop.time() + self._config.lag_interval_s
        while not self._stop_requested.is_set():
            records = await self._collect(consumer)
            # Records are fetched for the partitions assigned when they arrive; what counts
            # is a reassignment while they are applied and committed.
            epoch = self._assignment_epoch
            if records:
                self._applying = True
                try:
                    await self._process(consumer, records, epoch)
                finally:
                    self._applying = False
            if not self._caught_up.is_set():
                await self._check_caught_up(consumer)
            if loop.time() >= self._next_refresh:
                self._next_refresh = loop.time() + self._config.lag_interval_s
                await self._refresh(consumer)

    async def _collect(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[Any, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.max_wait_s
        batch: list[ConsumerRecord[Any, Any]] = []
        while len(batch) < self._config.max_batch and not self._stop_requested.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fetched = await consumer.getmany(
                timeout_ms=max(1, int(remaining * 1000)),
                max_records=self._config.max_batch - len(batch),
            )
            for records in fetched.values():
                batch.extend(records)
        return batch

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        records: Sequence[ConsumerRecord[Any, Any]],
        epoch: int,
    ) -> None:
        group = self.group_id
        offsets: dict[TopicPartition, int] = {}
        anchors: dict[TopicPartition, LogAnchor] = {}
        events: dict[str, list[ConsumedEvent[Any]]] = {}
        headers: dict[str, list[Any]] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset + 1 > offsets.get(tp, 0):
                offsets[tp] = record.offset + 1
                anchors[tp] = LogAnchor.of(record)
            handler = self._handlers[record.topic]
            try:
                payload = handler.decode(record.value)
            except Exception as exc:
                CONSUMED.labels(record.topic, group, "undecodable").inc()
                logger.warning(
                    "undecodable kafka record skipped",
                    extra={
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "group": group,
                        "error": repr(exc),
                    },
                )
                continue
            events.setdefault(record.topic, []).append(
                ConsumedEvent(
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.timestamp,
                    payload,
                )
            )
            headers.setdefault(record.topic, []).append(record.headers)
        if await self._apply(events, headers):
            committed = await self._commit(consumer, offsets, epoch)
            if committed and self._config.verify_logs:
                await self._verify_logs(consumer, {tp: anchors[tp] for tp in committed})

    async def _apply(
        self, events: dict[str, list[ConsumedEvent[Any]]], headers: dict[str, list[Any]]
    ) -> bool:
        """Apply every topic's batch, retrying failed ones; ``False`` if stopped first."""
        group = self.group_id
        pending = dict(events)
        backoff = self._config.retry_backoff_s
        while pending:
            for topic, batch in list(pending.items()):
                try:
                    with self._tracer.start_as_current_span(
                        f"{topic} process",
                        kind=trace.SpanKind.CONSUMER,
                        attributes={
                            "messaging.system": "kafka",
                            "messaging.destination.name": topic,
                            "messaging.consumer.group.name": group,
                            "messaging.batch.message_count": len(batch),
                        },
                    ) as span:
                        # Reading every record's headers is worth it only for a span that
                        # is kept (links are added after the start: our samplers ignore them).
                        if span.is_recording():
                            for link in producer_links(headers[topic]):
                                span.add_link(link.context)
                        await self._handlers[topic].handle(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    CONSUMED.labels(topic, group, "failed").inc(len(batch))
                    logger.warning(
                        "kafka batch handler failed; retrying",
                        extra={"topic": topic, "group": group, "error": repr(exc)},
                        exc_info=True,
                    )
                    continue
                CONSUMED.labels(topic, group, "ok").inc(len(batch))
                BATCH_SIZE.labels(topic, group).observe(len(batch))
                del pending[topic]
            if pending:
                if self._stop_requested.is_set():
                    return False
                await self._pause(backoff)
                backoff = min(backoff * 2, self._config.retry_backoff_max_s)
        return True

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], epoch: int
    ) -> set[TopicPartition]:
        """Commit ``offsets`` of the partitions still owned; the partitions committed."""
        if epoch != self._assignment_epoch:
            # The partitions were reassigned while the batch was applied: its
            # offsets may belong to logs the group no longer reads from there (a broker that
            # restarted empty starts every log anew), and committing them would make the
            # group skip the start of the new ones. The next batch's commit covers it; a
            # restart before that delivers it again.
            COMMIT_FAILURES.labels(self.group_id).inc()
            logger.warning(
                "partitions reassigned during the batch; its offsets are not committed",
                extra={"group": self.group_id},
            )
            return set()
        owned = consumer.assignment()
        to_commit = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not to_commit:
            if offsets:
                COMMIT_FAILURES.labels(self.group_id).inc()
                logger.warning(
                    "partitions lost before commit; the batch will be delivered again",
                    extra={"group": self.group_id},
                )
            return set()
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                await consumer.commit(to_commit)
            except (CommitFailedError, IllegalStateError) as exc:
                # Membership changed: another member owns these partitions now.
                self._commit_failed(exc)
                return set()
            except KafkaError as exc:
                if attempt == _COMMIT_ATTEMPTS:
                    self._commit_failed(exc)
                    return set()
                await asyncio.sleep(self._config.retry_backoff_s * attempt)
                continue
            self._committed.update(to_commit)
            return set(to_commit)
        return set()

    async def _verify_logs(
        self, consumer: AIOKafkaConsumer, anchors: Mapping[TopicPartition, LogAnchor]
    ) -> None:
        """Read again from the start the partitions whose log the broker replaced."""
        replaced = await self._log_checker.replaced(anchors) & consumer.assignment()
        if not replaced:
            return
        for tp in replaced:
            self._committed.pop(tp, None)
            LOG_RESETS.labels(tp.topic, self.group_id).inc()
        logger.warning(
            "the broker replaced logs this group committed to; reading them from the start",
            extra={
                "group": self.group_id,
                "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in replaced),
            },
        )
        await consumer.seek_to_beginning(*replaced)
        # The wrong offset stays the group's until a commit replaces it: now, so that a
        # restart meanwhile does not resume from it.
        try:
            starts = await consumer.beginning_offsets(list(replaced))
            await consumer.commit({tp: starts.get(tp, 0) for tp in replaced})
        except KafkaError as exc:
            logger.warning(
                "could not commit the start of a replaced log; the next batch's commit will",
                extra={"group": self.group_id, "error": repr(exc)},
            )

    def _commit_failed(self, exc: BaseException) -> None:
        COMMIT_FAILURES.labels(self.group_id).inc()
        logger.warning(
            "offset commit failed; the batch will be delivered again",
            extra={"group": self.group_id, "error": repr(exc)},
        )

    async def _refresh(self, consumer: AIOKafkaConsumer) -> None:
        if self._config.manage_topics:
            try:
                created = await self._admin.ensure(self._specs)
            except (KafkaError, OSError) as exc:
                logger.info("topic check failed", extra={"error": repr(exc)})
            else:
                if created:
                    raise _Reconnect(f"topics {sorted(created)} were missing (broker restarted?)")
        await self._update_lag(consumer)

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        owned = list(consumer.assignment())
        lag = dict.fromkeys(self._handlers, 0)
        if owned:
            try:
                # The high watermark of the last fetch response costs nothing; ask the broker
                # only for partitions not fetched yet.
                ends: dict[TopicPartition, int] = {}
                for tp in owned:
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        ends[tp] = highwater
                unknown = [tp for tp in owned if tp not in ends]
                if unknown:
                    ends.update(await consumer.end_offsets(unknown))
                for tp in owned:
                    committed = self._committed.get(tp)
                    if committed is None:
                        committed = await consumer.committed(tp)
                        if committed is not None:
                            self._committed[tp] = committed
                    lag[tp.topic] += max(0, ends.get(tp, 0) - (committed or 0))
            except (KafkaError, OSError) as exc:
                logger.info("consumer lag refresh failed", extra={"error": repr(exc)})
                return
        for topic, value in lag.items():
            CONSUMER_LAG.labels(topic, self.group_id).set(value)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        """Set :attr:`caught_up` when the committed offsets of every owned partition reached
        its mark; reads the marks of partitions owned for the first time."""
        owned = consumer.assignment()
        if not owned:
            return
        try:
            ends = {
                tp: highwater
                for tp in owned
                if tp not in self._start_marks and (highwater := consumer.highwater(tp)) is not None
            }
            if ends:
                starts = await consumer.beginning_offsets(list(ends))
                for tp, end in ends.items():
                    self._start_marks[tp] = end if end > starts.get(tp, 0) else 0
            for tp in owned:
                mark = self._start_marks.get(tp)
                if mark is None:
                    return  # not fetched from yet
                if mark == 0:
                    continue
                committed = self._committed.get(tp)
                if committed is None and tp not in self._commits_asked:
                    # Committed before this assignment (a restart of a group that had read
                    # everything): asked once; our own commits update ``_committed``.
                    self._commits_asked.add(tp)
                    committed = await consumer.committed(tp)
                    if committed is not None:
                        self._committed[tp] = committed
                if committed is None or committed < mark:
                    return
        except (KafkaError, OSError) as exc:
            logger.info("caught-up check failed", extra={"error": repr(exc)})
            return
        self._caught_up.set()
        logger.info(
            "kafka consumer caught up",
            extra={
                "group": self.group_id,
                "marks": {
                    f"{tp.topic}:{tp.partition}": mark
                    for tp, mark in sorted(self._start_marks.items())
                    if tp in owned
                },
                "after_s": round(asyncio.get_running_loop().time() - self._started_at, 3),
            },
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    # -- rebalance callbacks -------------------------------------------------------------

    def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._assignment_epoch += 1
        partitions = frozenset(assigned)
        for tp in partitions:
            # Another member may have committed while we did not own the partition.
            self._committed.pop(tp, None)
            self._commits_asked.discard(tp)
        self._partitions = partitions
        if partitions:
            self._has_partitions.set()
        else:
            self._has_partitions.clear()
        logger.info(
            "kafka partitions assigned",
            extra={
                "group": self.group_id,
                "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in partitions),
            },
        )

    def _forget(self, revoked: Iterable[TopicPartition]) -> None:
        self._assignment_epoch += 1
        gone = frozenset(revoked)
        for tp in gone:
            self._committed.pop(tp, None)
        self._partitions = self._partitions - gone
        if not self._partitions:
            self._has_partitions.clear()
