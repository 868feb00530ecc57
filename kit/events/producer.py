"""A Kafka producer that never blocks or fails its caller.

:meth:`EventProducer.publish` is a plain (non-async) call: it serialises the protobuf
event, captures the trace context and appends the event to a bounded in-memory buffer, then
returns at once. A background task hands buffered events to ``aiokafka`` in batches and
waits for the broker's acknowledgement; events that fail stay at the front of the buffer
and are retried with exponential backoff, so a broker outage costs memory (up to
``buffer_size`` events), never a failed or slow request. When the buffer is full new events
are dropped and counted (``webook_kafka_producer_dropped_total``); :meth:`publish` returns
``False`` for them.

Delivery is at-least-once while the process lives: a retry after a lost acknowledgement can
write an event twice (the broker has no idempotent producer), and events still buffered when
:meth:`stop`'s flush deadline passes, or when the process dies, are lost. Order is kept per
key except across a retry (an event that failed goes back to the front of the buffer).

Brokers that lose their state on restart (``tansu`` with memory storage) accept writes for
topics they no longer know and drop them. So before sending after a failure, or after
``idle_recheck_s`` without a successful send, the producer re-creates its configured topics
(:class:`~kit.events.topics.TopicAdmin`); a failure or a topic that had to be created again
replaces the ``aiokafka`` producer, which drops its stale metadata.

**Replay window.** An acknowledged event may still be lost with the broker's data: tansu's
memory storage on restart, or an unclean leader election in a real cluster. Events the broker
acknowledged in the last ``replay_window_s`` (at most ``replay_max_events``) are therefore
kept. The broker lost data when an acknowledgement carries an offset at or below the last
one this producer saw on that partition (offsets only grow), or when the producer itself had
to re-create a topic. Then every kept event goes back to the front of the buffer, ahead of
newer events, and is sent again: all topics, because a restarted broker lost all of them and
a partition this producer writes nothing more to would never show its loss. Consumers may see
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
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from opentelemetry import trace

from kit.events.metrics import PRODUCED, PRODUCER_BUFFERED, PRODUCER_DROPPED, PRODUCER_REPLAYED
from kit.events.topics import TopicAdmin, TopicSpec
from kit.events.tracing import TRACER_NAME, inject_headers

logger = logging.getLogger(__name__)

EventKey = str | int | bytes

_DROP_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How an :class:`EventProducer` connects, buffers and retries.

    Attributes:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        topics: topics created before the first send and re-created when a broker lost
            them (``manage_topics``); events may go to other topics too.
        buffer_size: most events waiting (buffered or in flight); beyond it events drop.
        max_batch: most events handed to ``aiokafka`` per round.
        linger_ms: how long ``aiokafka`` waits to fill a record batch.
        request_timeout_ms: how long a send waits for the broker before it counts as failed.
        retry_backoff_s / retry_backoff_max_s: first and largest pause between failed rounds.
        idle_recheck_s: re-check topics before sending after this long without a success.
        flush_timeout_s: how long :meth:`EventProducer.stop` keeps delivering.
        replay_window_s / replay_max_events: how long, and how many, acknowledged events
            are kept to be sent again if the broker loses them (0 disables the replay).
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
    where: tuple[str, int]
    """Topic and partition."""
    offset: int
    item: _Pending


ProducerFactory = Callable[[ProducerConfig], AIOKafkaProducer]


def _default_factory(config: ProducerConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        client_id=config.client_id,
        linger_ms=config.linger_ms,
        request_timeout_ms=config.request_timeout_ms,
        acks=1,
    )


def _position(metadata: object) -> tuple[int, int] | None:
    """The partition and offset of an acknowledgement (``aiokafka``'s ``RecordMetadata``)."""
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
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._admin = TopicAdmin(config.bootstrap, request_timeout_ms=config.request_timeout_ms)
        self._buffer: deque[_Pending] = deque()
        self._in_flight: list[_Pending] = []
        self._acknowledged: deque[_Acknowledged] = deque()
        # The highest offset acknowledged to this producer per (topic, partition).
        self._high_water: dict[tuple[str, int], int] = {}
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
        into the record's headers.
        """
        if self._closed or self.pending >= self._config.buffer_size:
            self._drop(topic, "stopped" if self._closed else "buffer full")
            return False
        with self._tracer.start_as_current_span(
            f"{topic} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        ):
            headers = inject_headers()
        self._buffer.append(_Pending(topic, encode_key(key), event.SerializeToString(), headers))
        PRODUCER_BUFFERED.labels(topic).inc()
        self._drained.clear()
        self._wakeup.set()
        return True

    def _drop(self, topic: str, reason: str) -> None:
        PRODUCER_DROPPED.labels(topic).inc()
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
            PRODUCER_DROPPED.labels(item.topic).inc()
            PRODUCER_BUFFERED.labels(item.topic).dec()
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
                for item in list(self._buffer)[: self._config.max_batch]:
                    PRODUCED.labels(item.topic, "error").inc()
                delivered_all = False
            if delivered_all:
                backoff = self._config.retry_backoff_s
                continue
            self._needs_check = self._needs_new_producer = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._config.retry_backoff_max_s)

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

    async def _send_round(self, producer: AIOKafkaProducer) -> bool:
        count = min(self._config.max_batch, len(self._buffer))
        self._in_flight = [self._buffer.popleft() for _ in range(count)]
        futures: list[asyncio.Future[object]] = []
        try:
            for item in self._in_flight:
                futures.append(
                    await producer.send(item.topic, item.value, key=item.key, headers=item.headers)
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("kafka send refused", extra={"error": repr(exc)})
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed: list[_Pending] = []
        first_error: BaseException | None = None
        acknowledged: list[_Acknowledged] = []
        lost: tuple[str, int] | None = None
        now = time.monotonic()
        for index, item in enumerate(self._in_flight):
            result = results[index] if index < len(results) else None
            if index < len(results) and not isinstance(result, BaseException):
                PRODUCED.labels(item.topic, "ok").inc()
                PRODUCER_BUFFERED.labels(item.topic).dec()
                position = _position(result)
                if position is not None:
                    where, offset = (item.topic, position[0]), position[1]
                    if offset <= self._high_water.get(where, -1):
                        lost = lost or where  # offsets only grow: this log started anew
                    acknowledged.append(_Acknowledged(now, where, offset, item))
                continue
            PRODUCED.labels(item.topic, "error").inc()
            if isinstance(result, BaseException) and first_error is None:
                first_error = result
            failed.append(item)
        self._buffer.extendleft(reversed(failed))
        self._in_flight = []
        if lost is not None:
            self._replay(f"offsets of partition {lost[1]} of {lost[0]} went back")
        for ack in acknowledged:
            self._high_water[ack.where] = max(ack.offset, self._high_water.get(ack.where, -1))
        self._keep(acknowledged, now)
        if len(failed) < count:
            self._last_success = time.monotonic()
        if failed:
            logger.warning(
                "kafka delivery failed; events stay buffered",
                extra={"failed": len(failed), "buffered": self.pending, "error": repr(first_error)},
            )
        return not failed

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
        show it. The offset marks start over (the events of the round that noticed the loss
        set them again: they were written to the new logs).
        """
        again, self._acknowledged = list(self._acknowledged), deque()
        self._high_water.clear()
        if not again:
            return
        self._buffer.extendleft(reversed([kept.item for kept in again]))
        self._drained.clear()
        per_topic = Tally(kept.item.topic for kept in again)
        for topic, count in per_topic.items():
            PRODUCER_REPLAYED.labels(topic).inc(count)
            PRODUCER_BUFFERED.labels(topic).inc(count)
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
