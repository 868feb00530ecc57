"""The relay: publishes outbox rows, in order per key, at least once.

Each round of :meth:`OutboxRelay.run_once`:

1. **scan** the oldest ``scan_limit`` pending rows in id order and pick up to
   ``batch_size`` that are due (``next_attempt_ms`` passed) and not leased to another relay;
   once a row of a key is not picked, no later row of that key is (order per key);
2. **claim** them with a lease: ``UPDATE ... SET claimed_by = <token>, claimed_until = now +
   lease WHERE id IN (...) AND sent_ms IS NULL AND (claimed_until IS NULL OR claimed_until <
   now)``. Only one of several relays racing for a row matches it (MySQL re-checks the
   condition on the locked row; SQLite has one writer at a time), so replicas never publish
   a row at the same time;
3. **check order**: a claimed row is kept only if no earlier pending row of its key is
   someone else's (a concurrent relay may have claimed the earlier row between our scan and
   our claim); the others are released at once;
4. **publish** through the :class:`OutboxPublisher`, keys concurrently, each key's rows one
   after another, stopping a key at its first failure;
5. **record** the outcome: sent rows get ``sent_ms``; a failed row gets ``attempts + 1`` and
   ``next_attempt_ms`` after a capped exponential back-off (it blocks its key's later rows
   until it is sent); every claim is cleared.

Delivery is **at least once**: a relay that dies after the broker's acknowledgement and
before step 5 leaves the rows claimed; when the lease expires another relay (or the same
process restarted) publishes them again. Consumers must tolerate duplicates
(``docs/events.md`` lists each consumer's dedupe key). Sent rows are deleted once older
than ``retention_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox.metrics import FAILURES, LAG, PENDING, PUBLISHED
from kit.outbox.outbox import Outbox, decode_headers, now_ms
from kit.outbox.table import CLAIM_LENGTH, ERROR_LENGTH, OutboxRow
from kit.sql import SessionFactory, rowcount

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How an :class:`OutboxRelay` polls, claims, retries and cleans up.

    Attributes:
        poll_interval_s: the longest pause between rounds (a commit that added rows in
            this process, or a full batch, starts the next round at once).
        batch_size: most rows claimed and published per round.
        scan_limit: pending rows looked at per round to find the batch (rows blocked behind
            a failing row of their key are skipped within this window).
        lease_s: how long a claim keeps other relays off a row (longer than a round takes).
        retry_backoff_s / retry_backoff_max_s: the pause after a row's first failed attempt,
            doubling with each further failure up to the maximum.
        publish_timeout_s: how long one publish may take before it counts as failed.
        retention_s: how long sent rows are kept before they are deleted.
        cleanup_interval_s: how often sent rows past the retention are deleted.
        stop_timeout_s: how long :meth:`OutboxRelay.stop` lets the current round finish.
    """

    poll_interval_s: float = 0.5
    batch_size: int = 100
    scan_limit: int = 1000
    lease_s: float = 30.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 60.0
    publish_timeout_s: float = 10.0
    retention_s: float = 86_400.0
    cleanup_interval_s: float = 60.0
    stop_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.scan_limit < self.batch_size:
            raise ValueError("need 1 <= batch_size <= scan_limit")
        if self.lease_s <= self.publish_timeout_s:
            raise ValueError("lease_s must exceed publish_timeout_s")

    def backoff_ms(self, attempts: int) -> int:
        """The pause after ``attempts`` failed attempts (1-based), in milliseconds."""
        delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2.0 ** (attempts - 1))
        return int(delay * 1000)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An outbox row as the publisher sees it."""

    id: int
    topic: str
    key: bytes
    payload: bytes
    headers: list[tuple[str, bytes]]
    attempts: int


class OutboxPublisher(Protocol):
    """Sends records to the broker."""

    async def publish(self, record: OutboxRecord) -> None:
        """Send ``record`` and return once the broker acknowledged it; raise otherwise."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


@dataclass(slots=True)
class _Outcome:
    sent: list[OutboxRecord]
    failed: list[tuple[OutboxRecord, str]]
    released: list[int]


def default_relay_id() -> str:
    """``host-pid-random``: names this relay's claims (for operators reading the table)."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class OutboxRelay:
    """Publishes an :class:`Outbox`'s rows; a runner component (``start``/``stop``).

    Args:
        sessions: sessions on the database holding the outbox table.
        outbox: the outbox whose rows to publish.
        publisher: where rows go (:class:`kit.outbox.KafkaOutboxPublisher` in production).
        config: polling, leases, back-off and retention.
        relay_id: prefix of this relay's claim tokens (default: host, pid and a random part).
        clock: wall-clock milliseconds (claims and back-off compare times across processes).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        outbox: Outbox,
        publisher: OutboxPublisher,
        config: RelayConfig | None = None,
        *,
        relay_id: str | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._model = outbox.model
        self._publisher = publisher
        self._config = config or RelayConfig()
        self._relay_id = (relay_id or default_relay_id())[: CLAIM_LENGTH - 13]
        self._clock = clock
        self._name = outbox.table_name
        self._pending_gauge = PENDING.labels(self._name)
        self._lag_gauge = LAG.labels(self._name)
        self._signal = outbox.commit_signal()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup_ms = 0

    def start(self) -> None:
        """Start polling in the background (inside the running event loop)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._name}")
            logger.info("outbox relay started", extra={"outbox": self._name})

    async def stop(self) -> None:
        """Let the current round finish (up to ``stop_timeout_s``), then stop and close the
        publisher. Rows of an interrupted round stay leased until the lease expires."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            self._signal.set()
            done, _ = await asyncio.wait([task], timeout=self._config.stop_timeout_s)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._publisher.close()
        logger.info("outbox relay stopped", extra={"outbox": self._name})

    async def _run(self) -> None:
        config = self._config
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database is unreachable or a concurrent relay won a lock: next round.
                logger.warning(
                    "outbox relay round failed", extra={"outbox": self._name, "error": repr(exc)}
                )
            if claimed >= config.batch_size or self._stopping.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signal.wait(), config.poll_interval_s)
            self._signal.clear()

    async def run_once(self) -> int:
        """One round (scan, claim, publish, record, maybe clean up); the rows claimed."""
        now = self._clock()
        candidates = await self._scan(now)
        claimed = await self._claim(candidates, now) if candidates else []
        if claimed:
            outcome = await self._publish(claimed)
            await self._record(outcome)
        await self._refresh_gauges()
        if now - self._last_cleanup_ms >= self._config.cleanup_interval_s * 1000:
            await self._clean_up(now)
            self._last_cleanup_ms = now
        return len(claimed)

    async def _scan(self, now: int) -> list[int]:
        model, config = self._model, self._config
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(model.id, model.event_key, model.next_attempt_ms, model.claimed_until)
                    .where(model.sent_ms.is_(None))
                    .order_by(model.id)
                    .limit(config.scan_limit)
                )
            ).all()
        blocked: set[str] = set()
        chosen: list[int] = []
        for row_id, key, next_attempt_ms, claimed_until in rows:
            if key in blocked:
                continue
            if next_attempt_ms > now or (claimed_until is not None and claimed_until >= now):
                blocked.add(key)
                continue
            chosen.append(row_id)
            if len(chosen) >= config.batch_size:
                break
        return chosen

    async def _claim(self, ids: Sequence[int], now: int) -> list[OutboxRecord]:
        model = self._model
        token = f"{self._relay_id}-{uuid.uuid4().hex[:12]}"
        async with self._sessions() as session:
            await session.execute(
                update(model)
                .where(
                    model.id.in_(ids),
                    model.sent_ms.is_(None),
                    model.next_attempt_ms <= now,
                    or_(model.claimed_until.is_(None), model.claimed_until < now),
                )
                .values(claimed_by=token, claimed_until=now + int(self._config.lease_s * 1000))
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        async with self._sessions() as session:
            mine = (
                await session.scalars(
                    select(model).where(model.claimed_by == token).order_by(model.id)
                )
            ).all()
            if not mine:
                return []
            # An earlier pending row of the same key that is not ours (claimed by a relay
            # that raced us, or waiting for its retry) must go first: release ours after it.
            foreign = (
                await session.execute(
                    select(model.event_key, func.min(model.id))
                    .where(
                        model.sent_ms.is_(None),
                        model.event_key.in_({row.event_key for row in mine}),
                        or_(model.claimed_by.is_(None), model.claimed_by != token),
                        model.id < mine[-1].id,
                    )
                    .group_by(model.event_key)
                )
            ).all()
            first_foreign: dict[str, int] = dict(foreign)
            kept: list[OutboxRow] = []
            released: list[int] = []
            for row in mine:
                blocker = first_foreign.get(row.event_key)
                if blocker is not None and blocker < row.id:
                    released.append(row.id)
                else:
                    kept.append(row)
            if released:
                await self._release(session, released, token)
                await session.commit()
            return [
                OutboxRecord(
                    id=row.id,
                    topic=row.topic,
                    key=row.event_key.encode("utf-8"),
                    payload=row.payload,
                    headers=decode_headers(row.headers),
                    attempts=row.attempts,
                )
                for row in kept
            ]

    async def _release(self, session: AsyncSession, ids: Sequence[int], token: str) -> None:
        model = self._model
        await session.execute(
            update(model)
            .where(model.id.in_(ids), model.claimed_by == token)
            .values(claimed_by=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        )

    async def _publish(self, records: Sequence[OutboxRecord]) -> _Outcome:
        by_key: dict[bytes, list[OutboxRecord]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record)
        outcome = _Outcome(sent=[], failed=[], released=[])

        async def publish_key(rows: list[OutboxRecord]) -> None:
            for index, record in enumerate(rows):
                try:
                    await asyncio.wait_for(
                        self._publisher.publish(record), self._config.publish_timeout_s
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcome.failed.append((record, repr(exc)[:ERROR_LENGTH]))
                    outcome.released.extend(later.id for later in rows[index + 1 :])
                    return
                outcome.sent.append(record)

        await asyncio.gather(*(publish_key(rows) for rows in by_key.values()))
        return outcome

    async def _record(self, outcome: _Outcome) -> None:
        model, now = self._model, self._clock()
        async with self._sessions() as session:
            if outcome.sent:
                await session.execute(
                    update(model)
                    .where(model.id.in_([record.id for record in outcome.sent]))
                    .values(sent_ms=now, claimed_by=None, claimed_until=None, last_error=None)
                    .execution_options(synchronize_session=False)
                )
            for record, error in outcome.failed:
                attempts = record.attempts + 1
                await session.execute(
                    update(model)
                    .where(model.id == record.id)
                    .values(
                        attempts=attempts,
                        next_attempt_ms=now + self._config.backoff_ms(attempts),
                        last_error=error,
                        claimed_by=None,
                        claimed_until=None,
                    )
                    .execution_options(synchronize_session=False)
                )
            if outcome.released:
                await session.execute(
                    update(model)
                    .where(model.id.in_(outcome.released))
                    .values(claimed_by=None, claimed_until=None)
                    .execution_options(synchronize_session=False)
                )
            await session.commit()
        for record in outcome.sent:
            PUBLISHED.labels(self._name, record.topic).inc()
        for record, error in outcome.failed:
            FAILURES.labels(self._name, record.topic).inc()
            logger.warning(
                "outbox publish failed; retrying later",
                extra={
                    "outbox": self._name,
                    "id": record.id,
                    "topic": record.topic,
                    "attempts": record.attempts + 1,
                    "error": error,
                },
            )
        if outcome.sent:
            logger.debug(
                "outbox rows published", extra={"outbox": self._name, "count": len(outcome.sent)}
            )

    async def _refresh_gauges(self) -> None:
        model = self._model
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(model.id), func.min(model.created_ms)).where(
                        model.sent_ms.is_(None)
                    )
                )
            ).one()
        self._pending_gauge.set(count)
        self._lag_gauge.set(max(0.0, (self._clock() - oldest) / 1000) if oldest else 0.0)

    async def _clean_up(self, now: int) -> None:
        model = self._model
        cutoff = now - int(self._config.retention_s * 1000)
        async with self._sessions() as session:
            result = await session.execute(
                delete(model)
                .where(model.sent_ms < cutoff)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        deleted = rowcount(result)
        if deleted:
            logger.info("outbox rows deleted", extra={"outbox": self._name, "count": deleted})
