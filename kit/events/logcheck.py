"""Whether a partition's log is still the one a consumer read: checked after each commit.

A broker that keeps its logs in memory (the local tansu) restarts empty, and producers that
replay what it lost write a new log at offsets starting from 0 again. A consumer that
fetched a batch from the old log and commits its offsets after the restart commits them to
the new log: tansu accepts a commit from a member it no longer knows (aiokafka retries a
commit whose connection broke until the coordinator answers again). The group would then
resume the new log there and skip its beginning: records it never applied, lost.

So after each commit the consumer asks the broker for the last record it committed past
(:class:`LogAnchor`: offset, timestamp, and a checksum of key and value) and compares: a
log that ends before that offset, or holds another record there, was replaced, and the
consumer reads that partition again from its beginning (handlers are idempotent; the next
commit overwrites the wrong offset). One fetch of one record per partition per commit, from
a consumer outside the group (:class:`LogChecker`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from kit.events.security import KafkaSecurity

logger = logging.getLogger(__name__)

# How long a fetch at an anchor may return nothing before the log's end is asked.
QUIET_S = 0.5


def _checksum(key: bytes | None, value: bytes | None) -> int:
    return zlib.crc32(value or b"", zlib.crc32(key or b""))


@dataclass(frozen=True, slots=True)
class LogAnchor:
    """A record a consumer read: what must still be at ``offset`` in the same log."""

    offset: int
    timestamp_ms: int
    checksum: int

    @classmethod
    def of(cls, record: ConsumerRecord[Any, Any]) -> LogAnchor:
        """The anchor of a record as fetched (raw key and value bytes)."""
        return cls(record.offset, record.timestamp, _checksum(record.key, record.value))

    def matches(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Whether ``record`` is the same record."""
        return (
            record.offset == self.offset
            and record.timestamp == self.timestamp_ms
            and _checksum(record.key, record.value) == self.checksum
        )


class LogChecker:
    """Fetches anchored records with a consumer of its own, outside any group."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        request_timeout_ms: int,
        security: KafkaSecurity,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._timeout_ms = request_timeout_ms
        self._security = security
        self._consumer: AIOKafkaConsumer | None = None

    async def replaced(self, anchors: Mapping[TopicPartition, LogAnchor]) -> set[TopicPartition]:
        """The partitions whose log no longer holds their anchor.

        A partition that cannot be checked (the broker does not answer in time) is not
        reported: the check is repeated at the next commit.
        """
        if not anchors:
            return set()
        try:
            return await self._replaced(anchors)
        except (KafkaError, OSError) as exc:
            # The consumer stays: it reconnects once the broker answers again.
            logger.info("log check failed; repeated at the next commit", extra={"error": repr(exc)})
            return set()

    async def _replaced(self, anchors: Mapping[TopicPartition, LogAnchor]) -> set[TopicPartition]:
        consumer = await self._ready()
        partitions = list(anchors)
        consumer.assign(partitions)
        try:
            return await self._compare(consumer, anchors)
        finally:
            # No fetching in the background between checks (nor metadata requests, with
            # which tansu re-creates a topic it lost, with its own partition count).
            consumer.assign([])

    async def _compare(
        self, consumer: AIOKafkaConsumer, anchors: Mapping[TopicPartition, LogAnchor]
    ) -> set[TopicPartition]:
        partitions = list(anchors)
        for tp in partitions:
            consumer.seek(tp, anchors[tp].offset)
        replaced: set[TopicPartition] = set()
        pending = set(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_ms / 1000
        ends_asked = False
        while pending and (remaining := deadline - loop.time()) > 0:
            try:
                fetched = await consumer.getmany(
                    *pending,
                    timeout_ms=max(1, int(min(remaining, QUIET_S) * 1000)),
                    max_records=len(pending),
                )
            except OffsetOutOfRangeError as exc:
                out = {tp for tp in exc.args[0] if tp in pending} if exc.args else set()
                if not out:
                    raise
                starts = await consumer.beginning_offsets(list(out))
                for tp in out:
                    pending.discard(tp)
                    # Below the log's start, retention removed it: nothing to compare.
                    if anchors[tp].offset >= starts.get(tp, 0):
                        replaced.add(tp)
                continue
            for tp, records in fetched.items():
                if tp in pending and records:
                    pending.discard(tp)
                    if not anchors[tp].matches(records[0]):
                        replaced.add(tp)
            if pending and not fetched and not ends_asked:
                # Nothing at the anchor yet: tansu waits at a log's end rather than refuse
                # an offset past it. Its end offset can be low (its last batch's base offset
                # plus one), but only for a record inside that batch, which a fetch returns
                # at once: an end at or below the anchor after a quiet fetch means the log
                # ends before it.
                ends_asked = True
                ends = await consumer.end_offsets(list(pending))
                short = {tp for tp in pending if ends.get(tp, 0) <= anchors[tp].offset}
                replaced |= short
                pending -= short
        return replaced

    async def _ready(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-logcheck",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                request_timeout_ms=self._timeout_ms,
                fetch_max_wait_ms=100,
                **self._security.client_options(),
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        """Release the connections (a later check opens new ones)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                # aiokafka's stop waits for its fetch task, which waits for a broker that may
                # be gone: bounded.
                await asyncio.wait_for(consumer.stop(), self._timeout_ms / 1000)
            except TimeoutError:
                logger.info("log checker did not close in time; abandoned")
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiokafka's stop lets out the cancellation of its own fetch task when that
                # task was retrying against a broker that is gone.
            except (KafkaError, OSError) as exc:
                logger.info("log checker did not close cleanly", extra={"error": repr(exc)})
