"""A Kafka producer that never blocks or fails its caller.

:meth:`EventProducer.publish` is a plain (non-async) call: it serialises the protobuf
event, captures the trace context and appends the event to a bounded in-memory buffer, then
returns at once. A background task lets events gather for ``linger_ms``, then hands them to
``aiokafka`` as one record batch per partition (its batch API: one future per batch, not per
event) and waits for the broker's acknowledgement; events that fail stay at the front of the
buffer and are retried with exponential backoff, so a broker outage costs memory (up to
``buffer_size`` events), never a failed or slow request. When the buffer is full new events
are dropped and counted (``webook_kafka_producer_dropped_total``); :meth:`publish` returns
``False`` for them.

Delivery is at-least-once while the process lives: a retry after a lost acknowledgement can
write an event twice, and events still buffered when :meth:`stop`'s flush deadline passes,
or when the process dies, are lost. Order is kept per key except across a retry (an event
that failed goes back to the front of the buffer). ``acks`` says how many copies the broker
writes before it acknowledges: ``"all"`` (the default) waits for the topic's in-sync
replicas, ``1`` for the leader alone. ``enable_idempotence`` has ``aiokafka`` number its
batches so that the broker drops the duplicate of a batch it already wrote when ``aiokafka``
resends it; it needs ``acks="all"`` and a broker that grants producer ids (the local tansu
broker refuses them, so it is off by default here and on in the production settings). It
does not cover this producer's own retries of a failed round, which are new batches.

Brokers that lose their state on restart (``tansu`` with memory storage) accept writes for
topics they no longer know and drop them. So before sending after a failure, or after
``idle_recheck_s`` without a successful send, the producer re-creates its configured topics
(:class:`~kit.events.topics.TopicAdmin`); a failure or a topic that had to be created again
replaces the ``aiokafka`` producer, which drops its stale metadata.

**Replay window.** An acknowledged event may still be lost with the broker's data: tansu's
memory storage on restart, or an unclean leader election in a real cluster. Events the broker
acknowledged in the last ``replay_window_s`` (at most ``replay_max_events``) are therefore
kept. The broker lost data when an acknowledgement carries an offset at or below the last
one this producer saw on that partition (offsets only grow), when the producer itself had
to re-create a topic, or when a topic's partitions changed since it last wrote to it (tansu
re-creates a lost topic, with its own partition count, when a client asks for its
metadata). Then every kept event goes back to the front of the buffer, ahead of newer
events, and is sent again: all topics, because a restarted broker lost all of them and a
partition this producer writes nothing more to would never show its loss. Consumers may see
those events twice if they had consumed them before the loss: duplicates are bounded by the
window, and our consumers are at-least-once anyway (read counts, versioned search
documents). What the window cannot bring back: events acknowledged longer ago than the
window, and a loss noticed only after the window (nothing sent for that long while another
client re-created the topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from google.protobuf.message import Message
from opentelemetry import trace

from kit.events.metrics import PRODUCED, PRODUCER_BUFFERED, PRODUCER_DROPPED, PRODUCER_REPLAYED
from kit.events.security import KafkaSecurity
from kit.events.topics import TopicAdmin, TopicSpec
from kit.events.tracing import TRACER_NAME, publish_trace_headers

logger = logging.getLogger(__name__)

EventKey = str | int | bytes
# What the broker waits for before acknowledging a batch.
Acks = Literal["all", 1]

_DROP_LOG_INTERVAL_S = 10.0
# Keys remembered per topic with their partition (murmur2 is pure Python in aiokafka).
_PARTITION_CACHE_KEYS = 65_536


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How an :class:`EventProducer` connects, buffers and retries.

    Attributes:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        topics: topics created before the first send and re-created when a broker lost
            them (``manage_topics``); events may go to other topics too.
        buffer_size: most events waiting (buffered or in flight); beyond it events drop.
        max_batch: most events sent per round (a round starts early when this many wait).
        linger_ms: how long a round waits, from its first event, for more events to join.
        request_timeout_ms: how long a send waits for the broker before it counts as failed.
        retry_backoff_s / retry_backoff_max_s: first and largest pause between failed rounds.
        idle_recheck_s: re-check topics before sending after this long without a success.
        flush_timeout_s: how long :meth:`EventProducer.stop` keeps delivering.
        replay_window_s / replay_max_events: how long, and how many, acknowledged events
            are kept to be sent again if the broker loses them (0 disables the replay).
        acks: ``"all"`` (every in-sync replica wrote the batch) or ``1`` (the leader did).
        enable_idempotence: ``aiokafka``'s idempotent producer; requires ``acks="all"``.
        security: how the producer and its topic admin authenticate to the brokers.

    The defaults suit the local broker and the tests; a service's production values come
    from its settings through :func:`kit.grpcx.process.wire_producer`.
    """

    bootstrap: str
    topics: tuple[TopicSpec, ...] = ()
    manage_topics: bool = True
    buffer_size: int = 10_000
    max_batch: int = 500
    linger_ms: int = 5
    request_timeout_ms: int = 5_000
    retry_backoff_s: float = 0.1
    retry_backoff_max_s: float = 5.0
    idle_recheck_s: float = 1.0
    flush_timeout_s: float = 5.0
    replay_window_s: float = 60.0
    replay_max_events: int = 10_000
    client_id: str = "webook"
    acks: Acks = "all"
    enable_idempotence: bool = False
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def __post_init__(self) -> None:
        if self.acks not in ("all", 1):
            raise ValueError(f"acks must be 'all' or 1, got {self.acks!r}")
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("an idempotent producer requires acks='all'")
        if self.replay_window_s < 0:
            raise ValueError(f"replay_window_s must be >= 0, got {self.replay_window_s}")


@dataclass(slots=True)
class _Pending:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class _Acknowledged:
    """An event the broker acknowledged, kept for the replay window."""

    at: float
    item: _Pending


class _TopicMetrics:
    """The label children of one topic, looked up once (``labels()`` costs a lock and a dict)."""

    __slots__ = ("buffered", "dropped", "error", "ok")

    def __init__(self, topic: str) -> None:
        self.buffered = PRODUCER_BUFFERED.labels(topic)
        self.dropped = PRODUCER_DROPPED.labels(topic)
        self.ok = PRODUCED.labels(topic, "ok")
        self.error = PRODUCED.labels(topic, "error")


ProducerFactory = Callable[[ProducerConfig], AIOKafkaProducer]


def _default_factory(config: ProducerConfig) -> AIOKafkaProducer:
    # The producer lingers itself and hands aiokafka closed batches, which it sends at once.
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        client_id=config.client_id,
        request_timeout_ms=config.request_timeout_ms,
        acks=config.acks,
        enable_idempotence=config.enable_idempotence,
        **config.security.client_options(),
    )


def ack_position(metadata: object) -> tuple[int, int] | None:
    """The partition and offset of an acknowledgement (``aiokafka``'s ``RecordMetadata``);
    ``None`` when it carries none (the outbox publisher reads it too)."""
    partition = getattr(metadata, "partition", None)
    offset = getattr(metadata, "offset", None)
    if isinstance(partition, int) and isinstance(offset, int) and offset >= 0:
        return partition, offset
    return None


def encode_key(key: EventKey) -> bytes:
    """The record key of an entity id (decimal text for integers)."""
    if isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of ``key`` among ``partitions`` (sorted), as Kafka's default partitioner.

    murmur2 of the key, as ``aiokafka``'s and the Java client's default partitioner: the
    producer chooses partitions itself since it sends whole batches, and keeps the choice
    every other client makes for the same key.
    """
    index: int = murmur2(key) & 0x7FFFFFFF
    return partitions[index % len(partitions)]


class EventProducer:
    """Buffered, retrying publisher of protobuf events; :meth:`start` before use."""

    def __init__(
        self,
        config: ProducerConfig,
        *,
        producer_factory: ProducerFactory = _default_factory,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._config = config
        self._factory = producer_factory
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._admin = TopicAdmin(
            config.bootstrap,
            request_timeout_ms=config.request_timeout_ms,
            security=config.security,
        )
        self._buffer: deque[_Pending] = deque()
        self._in_flight: list[_Pending] = []
        self._acknowledged: deque[_Acknowledged] = deque()
        # The highest offset acknowledged to this producer per (topic, partition).
        self._high_water: dict[tuple[str, int], int] = {}
        self._metrics: dict[str, _TopicMetrics] = {}
        # Per topic: its partitions when the keys were placed, and the keys' partitions.
        self._placements: dict[str, tuple[tuple[int, ...], dict[bytes, int]]] = {}
        # When the oldest buffered event of the next round was published (monotonic).
        self._first_at = 0.0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        self._closed = False
        self._needs_check = True
        self._needs_new_producer = False
        self._last_success = 0.0
        self._unlogged_drops = 0
        self._last_drop_log = -_DROP_LOG_INTERVAL_S

    @property
    def pending(self) -> int:
        """Events buffered or in flight."""
        return len(self._buffer) + len(self._in_flight)

    def publish(self, topic: str, key: EventKey, event: Message) -> bool:
        """Queue ``event`` for ``topic`` keyed by ``key``; ``False`` if it was dropped.

        Never blocks and never raises for broker trouble. The current trace context goes
        into the record's headers (see :meth:`_trace_headers`).
        """
        buffer = self._buffer
        if self._closed or len(buffer) + len(self._in_flight) >= self._config.buffer_size:
            self._drop(topic, "stopped" if self._closed else "buffer full")
            return False
        headers = self._trace_headers(topic)
        item = _Pending(topic, encode_key(key), event.SerializeToString(), headers)
        if not buffer:
            self._first_at = time.monotonic()
            self._wakeup.set()
        elif len(buffer) + 1 >= self._config.max_batch:
            self._wakeup.set()  # a full round need not linger
        buffer.append(item)
        self._topic_metrics(topic).buffered.inc()
        self._drained.clear()
        return True

    def _trace_headers(self, topic: str) -> list[tuple[str, bytes]]:
        return publish_trace_headers(topic, self._tracer, self._tracer_provider)

    def _topic_metrics(self, topic: str) -> _TopicMetrics:
        metrics = self._metrics.get(topic)
        if metrics is None:
            metrics = self._metrics[topic] = _TopicMetrics(topic)
        return metrics

    def _drop(self, topic: str, reason: str) -> None:
        self._topic_metrics(topic).dropped.inc()
        self._unlogged_drops += 1
        now = time.monotonic()
        # An outage under load drops many events per second: log a summary, not each one.
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL_S:
            logger.warning(
                "events dropped",
                extra={"topic": topic, "reason": reason, "count": self._unlogged_drops},
            )
            self._unlogged_drops, self._last_drop_log = 0, now

    def start(self) -> None:
        """Start the background sender (inside the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kafka-producer")

    async def flush(self, within_s: float) -> bool:
        """Wait until every queued event is delivered; ``False`` if ``within_s`` passed first."""
        try:
            await asyncio.wait_for(self._drained.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Deliver what is buffered for up to ``flush_timeout_s``, then drop the rest."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=self._config.flush_timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait([task])
        lost = [*self._in_flight, *self._buffer]
        self._in_flight, self._buffer = [], deque()
        for item in lost:
            metrics = self._topic_metrics(item.topic)
            metrics.dropped.inc()
            metrics.buffered.dec()
        if lost:
            logger.warning("events dropped at stop", extra={"count": len(lost)})
        self._drained.set()
        await self._close_producer()
        await self._admin.close()

    async def _run(self) -> None:
        backoff = self._config.retry_backoff_s
        while True:
            if not self._buffer:
                self._drained.set()
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._linger()
            try:
                producer = await self._ready_producer()
                delivered_all = await self._send_round(producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "kafka unreachable; events stay buffered",
                    extra={"buffered": self.pending, "error": repr(exc)},
                )
                self._count(list(self._buffer)[: self._config.max_batch], "error")
                delivered_all = False
            if delivered_all:
                backoff = self._config.retry_backoff_s
                continue
            self._needs_check = self._needs_new_producer = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._config.retry_backoff_max_s)

    async def _linger(self) -> None:
        """Let more events join the round, until ``linger_ms`` after its first was published.

        One produce request then carries every event of the round: per event, the broker,
        the sender and the consumers' fetches cost less. A full round (``max_batch`` events),
        a stop, or events left over from a failed round do not wait.
        """
        delay = self._first_at + self._config.linger_ms / 1000 - time.monotonic()
        if delay <= 0 or self._stopping or len(self._buffer) >= self._config.max_batch:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wakeup.wait()

    async def _ready_producer(self) -> AIOKafkaProducer:
        idle = time.monotonic() - self._last_success > self._config.idle_recheck_s
        if self._config.manage_topics and self._config.topics and (self._needs_check or idle):
            created = await self._admin.ensure(self._config.topics)
            if created and self._producer is not None:
                logger.warning(
                    "kafka topics were missing (broker restarted?); reconnecting the producer",
                    extra={"topics": sorted(created)},
                )
                self._needs_new_producer = True
                self._replay(f"topics {sorted(created)} had to be created again")
        self._needs_check = False
        if self._needs_new_producer:
            await self._close_producer()
            self._needs_new_producer = False
        if self._producer is None:
            producer = self._factory(self._config)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _by_partition(
        self, producer: AIOKafkaProducer, items: Sequence[_Pending]
    ) -> dict[tuple[str, int], list[int]]:
        """The indexes of ``items`` per (topic, partition), in order.

        A topic whose partitions changed since this producer last wrote to it was most
        likely created anew (tansu re-creates a topic it lost, with its own partition count,
        when a client asks for its metadata): the kept events are sent again.
        """
        groups: dict[tuple[str, int], list[int]] = {}
        current: dict[str, tuple[tuple[int, ...], dict[bytes, int]]] = {}
        for index, item in enumerate(items):
            placement = current.get(item.topic)
            if placement is None:
                partitions = tuple(sorted(await producer.partitions_for(item.topic)))
                placement = self._placements.get(item.topic)
                if placement is None or placement[0] != partitions:
                    if placement is not None:
                        self._replay(f"partitions of {item.topic} changed: {partitions}")
                    placement = self._placements[item.topic] = (partitions, {})
                current[item.topic] = placement
            partitions, known = placement
            partition = known.get(item.key)
            if partition is None:
                if len(known) >= _PARTITION_CACHE_KEYS:
                    known.clear()
                partition = known[item.key] = partition_for(item.key, partitions)
            groups.setdefault((item.topic, partition), []).append(index)
        return groups

    async def _send_round(self, producer: AIOKafkaProducer) -> bool:
        count = min(self._config.max_batch, len(self._buffer))
        in_flight = self._in_flight = [self._buffer.popleft() for _ in range(count)]
        # One record batch per partition (another if it fills up): aiokafka then resolves
        # one future per batch instead of one per event.
        sent: list[tuple[asyncio.Future[Any], str, list[int]]] = []
        try:
            groups = await self._by_partition(producer, in_flight)
            for (topic, partition), indexes in groups.items():
                batch, members = producer.create_batch(), list[int]()
                for index in indexes:
                    item = in_flight[index]
                    if members and not self._append(batch, item):
                        batch.close()
                        future = await producer.send_batch(batch, topic, partition=partition)
                        sent.append((future, topic, members))
                        batch, members = producer.create_batch(), list[int]()
                    if not members and not self._append(batch, item):
                        raise ValueError(f"an event of {topic} does not fit in a record batch")
                    members.append(index)
                batch.close()
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append((future, topic, members))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("kafka send refused", extra={"error": repr(exc)})
        results = await asyncio.gather(*(future for future, _, _ in sent), return_exceptions=True)
        delivered = [False] * count
        first_error: BaseException | None = None
        lost: tuple[str, int] | None = None
        now = time.monotonic()
        for (_, topic, members), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                first_error = first_error or result
                continue
            for index in members:
                delivered[index] = True
            position = ack_position(result)
            if position is not None:
                # The batch's records have consecutive offsets from its base offset.
                where, base = (topic, position[0]), position[1]
                if base <= self._high_water.get(where, -1):
                    lost = lost or where  # offsets only grow: this log started anew
                self._high_water[where] = base + len(members) - 1
        failed = [item for index, item in enumerate(in_flight) if not delivered[index]]
        ok = [item for index, item in enumerate(in_flight) if delivered[index]]
        self._count(ok, "ok")
        self._count(failed, "error")
        self._buffer.extendleft(reversed(failed))
        self._in_flight = []
        if lost is not None:
            self._replay(f"offsets of partition {lost[1]} of {lost[0]} went back")
            # The marks start over from what this round wrote to the new logs.
            for (_, topic, members), result in zip(sent, results, strict=True):
                position = None if isinstance(result, BaseException) else ack_position(result)
                if position is not None:
                    self._high_water[(topic, position[0])] = position[1] + len(members) - 1
        # In publishing order: the window keeps the latest events.
        self._keep([_Acknowledged(now, item) for item in ok], now)
        if len(failed) < count:
            self._last_success = time.monotonic()
        if failed:
            logger.warning(
                "kafka delivery failed; events stay buffered",
                extra={"failed": len(failed), "buffered": self.pending, "error": repr(first_error)},
            )
        return not failed

    @staticmethod
    def _append(batch: Any, item: _Pending) -> bool:
        """Add ``item`` to ``batch`` (``aiokafka``'s ``BatchBuilder``); ``False`` if it is full."""
        added = batch.append(timestamp=None, key=item.key, value=item.value, headers=item.headers)
        return added is not None

    def _count(self, items: Sequence[_Pending], result: str) -> None:
        """Count ``items`` as produced with ``result`` (``ok``: no longer buffered)."""
        for topic, count in Tally(item.topic for item in items).items():
            metrics = self._topic_metrics(topic)
            if result == "ok":
                metrics.ok.inc(count)
                metrics.buffered.dec(count)
            else:
                metrics.error.inc(count)

    def _keep(self, acknowledged: list[_Acknowledged], now: float) -> None:
        """Remember ``acknowledged`` for the replay window; forget what fell out of it."""
        if self._config.replay_window_s <= 0 or self._config.replay_max_events <= 0:
            return
        kept = self._acknowledged
        kept.extend(acknowledged)
        horizon = now - self._config.replay_window_s
        while kept and (kept[0].at < horizon or len(kept) > self._config.replay_max_events):
            kept.popleft()

    def _replay(self, why: str) -> None:
        """The broker lost data: send every kept event again, ahead of newer events.

        Every topic, not only the one where the loss showed: a broker that restarted empty
        lost all of them, and a partition this producer writes nothing more to would never
        show it. The offset marks and the partitions seen start over (the events of the round
        that noticed the loss set them again: they were written to the new logs).
        """
        again, self._acknowledged = list(self._acknowledged), deque()
        self._high_water.clear()
        # Partitions seen from now on are those of the new logs.
        self._placements.clear()
        if not again:
            return
        self._buffer.extendleft(reversed([kept.item for kept in again]))
        self._drained.clear()
        per_topic = Tally(kept.item.topic for kept in again)
        for topic, count in per_topic.items():
            PRODUCER_REPLAYED.labels(topic).inc(count)
            self._topic_metrics(topic).buffered.inc(count)
        logger.warning(
            "kafka lost acknowledged events (broker restarted?); sending them again",
            extra={"why": why, "count": len(again), "topics": sorted(per_topic)},
        )

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:
                logger.debug("closing the kafka producer failed", exc_info=True)
