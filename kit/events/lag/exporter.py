"""Consumer-group lag read from the brokers, independent of any consumer.

A :class:`LagExporter` asks the brokers, every ``interval_s``, which consumer groups exist,
what each one committed and where each partition begins and ends, and sets the gauges of
:mod:`kit.events.lag.metrics`. Because nothing here runs inside a consumer, the lag of a
group whose consumers are all down keeps being reported, and keeps growing.

How lag is measured (:func:`measure_lag`): a group reads the topics it has committed an
offset on (with no member running, nothing else tells which topics a group reads). For
each partition of those topics the lag is ``end - position``, where the position is the
committed offset, or the partition's beginning offset when the group committed nothing
there (or committed below it: those records are gone, a consumer restarts at the
beginning). Never negative: a broker that lost its data can hold offsets behind a commit.

Committed offsets are fetched for explicit partitions, one OffsetFetch per group: the "all
partitions" form of the request is not answered by every Kafka-protocol broker (tansu, the
local one, closes the connection), and the explicit form works everywhere.

Failures: anything a scrape raises (brokers unreachable, a request refused by an ACL, a
scrape slower than ``scrape_timeout_s``) is counted, the connections are closed so the next
scrape starts from a fresh bootstrap, and the gauges keep their last values; the scrape-age
gauge tells how old they are. The exporter logs once when scrapes start failing and once
when they succeed again, not at every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace

from kit.events.lag.metrics import (
    GROUP_LAG,
    GROUP_LAG_SUM,
    LAST_SUCCESS,
    SCRAPE_AGE,
    SCRAPE_FAILURES,
)
from kit.events.security import KafkaSecurity

logger = logging.getLogger(__name__)

TRACER_NAME = __name__

# Group protocol types of consumer groups ("" for groups from before Kafka 0.9); Kafka
# Connect and other protocols coordinate through groups too, but commit no offsets.
_CONSUMER_PROTOCOLS = frozenset({"consumer", ""})


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far one group is behind on one partition.

    Attributes:
        group / topic / partition: where.
        committed: the group's committed offset; ``None`` if it committed nothing there.
        beginning / end: the partition's first available offset and its end offset (the
            offset the next record will get).
    """

    group: str
    topic: str
    partition: int
    committed: int | None
    beginning: int
    end: int

    @property
    def lag(self) -> int:
        """Records between where the group resumes and the end of the partition."""
        position = self.beginning if self.committed is None else max(self.committed, self.beginning)
        return max(0, self.end - position)


class OffsetReader(Protocol):
    """What the exporter reads from the brokers (:class:`KafkaOffsetReader` in production)."""

    async def groups(self) -> list[str]:
        """The consumer groups the brokers know."""
        ...

    async def partitions(self) -> dict[str, list[int]]:
        """Topic → its partitions, for every topic that is not internal."""
        ...

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The offsets ``group`` committed on ``partitions`` (those without one left out)."""
        ...

    async def watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Beginning and end offsets of ``partitions``."""
        ...

    async def close(self) -> None:
        """Release connections; the next call reconnects."""
        ...


def watched(groups: Iterable[str], prefixes: Sequence[str]) -> list[str]:
    """``groups`` starting with one of ``prefixes`` (all of them when there is none), sorted."""
    return sorted(g for g in set(groups) if not prefixes or g.startswith(tuple(prefixes)))


def lag_of(
    group: str,
    layout: Mapping[str, Sequence[int]],
    committed: Mapping[TopicPartition, int],
    beginnings: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """The lag of ``group`` on every partition of the topics it committed on.

    ``layout`` maps each topic to its partitions; a topic the group committed nothing on
    is not one it reads (as far as the brokers can tell) and is left out.
    """
    topics = sorted({tp.topic for tp in committed if tp.topic in layout})
    lags = []
    for topic in topics:
        for partition in sorted(layout[topic]):
            tp = TopicPartition(topic, partition)
            beginning = beginnings.get(tp, 0)
            lags.append(
                PartitionLag(
                    group, topic, partition, committed.get(tp), beginning, ends.get(tp, beginning)
                )
            )
    return lags


async def measure_lag(reader: OffsetReader, prefixes: Sequence[str] = ()) -> list[PartitionLag]:
    """The lag of every watched group on every partition it reads (see the module docstring)."""
    groups = watched(await reader.groups(), prefixes)
    if not groups:
        return []
    layout = await reader.partitions()
    every = [TopicPartition(t, p) for t, parts in sorted(layout.items()) for p in sorted(parts)]
    if not every:
        return []
    committed = {group: await reader.committed(group, every) for group in groups}
    read = {tp.topic for offsets in committed.values() for tp in offsets}
    needed = [tp for tp in every if tp.topic in read]
    beginnings, ends = await reader.watermarks(needed) if needed else ({}, {})
    return [
        lag for group in groups for lag in lag_of(group, layout, committed[group], beginnings, ends)
    ]


class KafkaOffsetReader:
    """Reads groups and offsets with an admin client and a consumer that joins no group.

    Both connect on first use; :meth:`close` drops them, and the next call reconnects from
    the bootstrap servers (the brokers may have restarted, or moved, in between).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        security: KafkaSecurity | None = None,
        request_timeout_ms: int = 10_000,
        client_id: str = "webook-lag-exporter",
    ) -> None:
        self._bootstrap = bootstrap
        self._security = security or KafkaSecurity()
        self._request_timeout_ms = request_timeout_ms
        self._client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def groups(self) -> list[str]:
        """The consumer groups the brokers know."""
        listed = await (await self._admin_client()).list_consumer_groups()
        return [str(entry[0]) for entry in listed if entry[1] in _CONSUMER_PROTOCOLS]

    async def partitions(self) -> dict[str, list[int]]:
        """Topic → its partitions, internal topics (``__consumer_offsets``...) left out."""
        consumer = await self._offsets_consumer()
        topics = await consumer.topics()
        layout = {}
        for topic in topics:
            if topic.startswith("__"):
                continue
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                layout[topic] = sorted(partitions)
        return layout

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The offsets ``group`` committed on ``partitions``."""
        if not partitions:
            # No partitions would ask for "all of them": the form some brokers refuse.
            return {}
        admin = await self._admin_client()
        offsets = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Beginning and end offsets of ``partitions`` (one ListOffsets request each way)."""
        consumer = await self._offsets_consumer()
        beginnings = await consumer.beginning_offsets(list(partitions))
        ends = await consumer.end_offsets(list(partitions))
        return dict(beginnings), dict(ends)

    async def close(self) -> None:
        """Close both clients; errors while closing are only logged."""
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        for closing in (admin.close() if admin else None, consumer.stop() if consumer else None):
            if closing is None:
                continue
            try:
                await closing
            except Exception:
                logger.debug("closing a kafka client of the lag exporter failed", exc_info=True)

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._request_timeout_ms,
                client_id=self._client_id,
                **self._security.client_options(),
            )
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def _offsets_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                client_id=self._client_id,
                enable_auto_commit=False,
                request_timeout_ms=self._request_timeout_ms,
                # Every scrape asks for the whole topic list anyway.
                metadata_max_age_ms=60_000,
                **self._security.client_options(),
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer


class LagExporter:
    """Scrapes group lag every ``interval_s`` into the gauges; :meth:`start`, then :meth:`stop`.

    ``group_prefixes``: watch only the groups whose names start with one of them (all
    groups when empty). ``scrape_timeout_s``: a scrape that takes longer is abandoned and
    counted as failed. ``clock``: Unix time (tests pass their own).
    """

    def __init__(
        self,
        reader: OffsetReader,
        *,
        interval_s: float = 15.0,
        group_prefixes: Sequence[str] = (),
        scrape_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if interval_s <= 0 or scrape_timeout_s <= 0:
            raise ValueError("interval_s and scrape_timeout_s must be positive")
        self._reader = reader
        self._interval_s = interval_s
        self._prefixes = tuple(group_prefixes)
        self._scrape_timeout_s = scrape_timeout_s
        self._clock = clock
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._started_at = clock()
        self._last_success: float | None = None
        # None until the first scrape; then whether the last one succeeded (logs are
        # written when this changes, not at every scrape).
        self._healthy: bool | None = None
        self._failures_in_a_row = 0
        self._partitions: set[tuple[str, str, str]] = set()
        self._sums: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool | None:
        """Whether the last scrape succeeded (``None`` before the first)."""
        return self._healthy

    @property
    def running(self) -> bool:
        """Whether the background scrapes run (started, not stopped, not crashed)."""
        return self._task is not None and not self._task.done()

    def scrape_age(self) -> float:
        """Seconds since the last successful scrape (since the exporter was built, before one)."""
        since = self._started_at if self._last_success is None else self._last_success
        return max(0.0, self._clock() - since)

    def start(self) -> None:
        """Scrape now and every ``interval_s`` in the background (inside the running loop)."""
        SCRAPE_AGE.set_function(self.scrape_age)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kafka-lag-exporter")

    async def stop(self) -> None:
        """Stop scraping and close the connections."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._reader.close()

    async def scrape(self) -> bool:
        """One scrape: read every watched group's lag and set the gauges; ``False`` if it failed.

        Never raises (but for cancellation): the exporter must keep serving its metrics
        whatever the brokers do.
        """
        with self._tracer.start_as_current_span("kafka lag scrape") as span:
            try:
                lags = await asyncio.wait_for(
                    measure_lag(self._reader, self._prefixes), self._scrape_timeout_s
                )
            except asyncio.CancelledError:
                raise
            # Any error, including ones aiokafka raises outside its KafkaError tree (a
            # response it cannot decode): a failed scrape, never a dead exporter.
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
                await self._failed(exc)
                return False
            span.set_attribute("messaging.kafka.lag.partitions", len(lags))
        self._publish(lags)
        self._succeeded(lags)
        return True

    async def _run(self) -> None:
        while True:
            await self.scrape()
            await asyncio.sleep(self._interval_s)

    def _publish(self, lags: Sequence[PartitionLag]) -> None:
        partitions: set[tuple[str, str, str]] = set()
        sums: dict[tuple[str, str], int] = {}
        for lag in lags:
            labels = (lag.group, lag.topic, str(lag.partition))
            GROUP_LAG.labels(*labels).set(lag.lag)
            partitions.add(labels)
            sums[(lag.group, lag.topic)] = sums.get((lag.group, lag.topic), 0) + lag.lag
        for key, total in sums.items():
            GROUP_LAG_SUM.labels(*key).set(total)
        # Groups deleted (or topics no longer committed on) stop being reported.
        for labels in self._partitions - partitions:
            with contextlib.suppress(KeyError):
                GROUP_LAG.remove(*labels)
        for key in self._sums - set(sums):
            with contextlib.suppress(KeyError):
                GROUP_LAG_SUM.remove(*key)
        self._partitions, self._sums = partitions, set(sums)

    def _succeeded(self, lags: Sequence[PartitionLag]) -> None:
        self._last_success = self._clock()
        LAST_SUCCESS.set(self._last_success)
        if self._healthy is not True:
            logger.info(
                "kafka lag scrape succeeded"
                if self._healthy is None
                else "kafka lag scrapes work again",
                extra={
                    "groups": len({lag.group for lag in lags}),
                    "partitions": len(lags),
                    "failed_scrapes": self._failures_in_a_row,
                },
            )
        self._healthy = True
        self._failures_in_a_row = 0

    async def _failed(self, exc: BaseException) -> None:
        SCRAPE_FAILURES.inc()
        self._failures_in_a_row += 1
        await self._reader.close()
        error = repr(exc) if not isinstance(exc, TimeoutError) else "scrape timed out"
        if self._healthy is not False:
            logger.warning(
                "kafka lag scrape failed; retrying every interval, lag gauges keep their values",
                extra={"error": error, "interval_s": self._interval_s},
            )
        else:
            logger.debug("kafka lag scrape failed again", extra={"error": error})
        self._healthy = False
