"""The relay: publishes outbox rows, in order per key, at least once.

Each round of :meth:`OutboxRelay.run_once` takes three transactions:

1. **scan** pending rows in id order, in pages (``batch_size`` rows, doubling, at most
   ``scan_limit`` rows in all), and pick up to ``batch_size`` that are due
   (``next_attempt_ms`` passed) and not leased to another relay; once a row of a key is not
   picked, no later row of that key is (order per key);
2. **claim** them with a lease: ``UPDATE ... SET claimed_by = <token>, claimed_until = now +
   lease WHERE id IN (...) AND sent_ms IS NULL AND (claimed_until IS NULL OR claimed_until <
   now)``. Only one of several relays racing for a row matches it (MySQL re-checks the
   condition on the locked row; SQLite has one writer at a time), so replicas never publish
   a row at the same time. In the same transaction, **check order**: a claimed row is kept
   only if no earlier pending row of its key is someone else's (a concurrent relay may have
   claimed the earlier row between our scan and our claim); the others are released before
   the claim commits;
3. **publish** through the :class:`OutboxPublisher` in waves: the first row of every key
   together, then the second of every key whose first was acknowledged, and so on; a key
   stops at its first failure;
4. **record** the outcome: sent rows get ``sent_ms``; a failed row gets ``attempts + 1`` and
   ``next_attempt_ms`` after a capped exponential back-off (it blocks its key's later rows
   until it is sent); every claim is cleared.

The pending and lag gauges are refreshed at most every ``gauge_interval_s`` (a count of the
pending rows), sent rows past the retention deleted every ``cleanup_interval_s``.

Delivery is **at least once**: a relay that dies after the broker's acknowledgement and
before step 4 leaves the rows claimed; when the lease expires another relay (or the same
process restarted) publishes them again. Consumers must tolerate duplicates
(``docs/events.md`` lists each consumer's dedupe key). Sent rows are deleted once older
than ``retention_s``.

**A broker that forgets** (the local broker keeps its logs in memory): when the publisher
reports that the broker lost records it had acknowledged (topics created again, a
partition's offsets going back), the rows sent in the last ``replay_window_s`` are made
pending again and published once more, from the table, in id order. A replicated broker
never does that; production leaves the window at 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox.metrics import FAILURES, LAG, PENDING, PUBLISHED, REPLAYED
from kit.outbox.outbox import Outbox, decode_headers, now_ms
from kit.outbox.table import CLAIM_LENGTH, ERROR_LENGTH
from kit.sql import SessionFactory, rowcount

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How an :class:`OutboxRelay` polls, claims, retries and cleans up.

    Attributes:
        poll_interval_s: the longest pause between rounds (a commit that added rows in
            this process, or a full batch, starts the next round at once).
        batch_size: most rows claimed and published per round. A round costs about three
            transactions whatever its size, so larger batches drain a backlog faster (5,000
            events/s on MariaDB takes about 500: ``bench/outbox.py``).
        scan_limit: pending rows looked at per round to find the batch (rows blocked behind
            a failing row of their key are skipped within this window). They are read in
            pages of ``batch_size`` rows, and a round reads no further than it needs.
        lease_s: how long a claim keeps other relays off a row (longer than a round takes).
        retry_backoff_s / retry_backoff_max_s: the pause after a row's first failed attempt,
            doubling with each further failure up to the maximum.
        publish_timeout_s: how long one wave of records may take to be acknowledged before
            every record of it counts as failed.
        retention_s: how long sent rows are kept before they are deleted.
        cleanup_interval_s: how often sent rows past the retention are deleted.
        concurrency: rounds in flight at once. Each round waits on the database (claim,
            record) and on the broker (publish); with two, one round's publish overlaps the
            next one's claim. Rounds scan and claim one at a time and keep off each other's
            keys as replicas do, so order per key holds whatever the number. One by default:
            on a busy two-core host a second round costs more CPU than it saves in waiting
            (``bench/outbox.py``); it pays where the database or broker is far away.
        gauge_interval_s: how often the pending and lag gauges are refreshed (each refresh
            counts the pending rows: once a round would cost a busy relay a query a batch).
        stop_timeout_s: how long :meth:`OutboxRelay.stop` lets the current round finish.
        replay_window_s: how far back sent rows are published again when the broker lost
            acknowledged records (0: never; at most ``retention_s``).
    """

    poll_interval_s: float = 0.5
    batch_size: int = 500
    scan_limit: int = 5000
    lease_s: float = 30.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 60.0
    publish_timeout_s: float = 10.0
    retention_s: float = 86_400.0
    cleanup_interval_s: float = 60.0
    concurrency: int = 1
    gauge_interval_s: float = 1.0
    stop_timeout_s: float = 5.0
    replay_window_s: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.scan_limit < self.batch_size:
            raise ValueError("need 1 <= batch_size <= scan_limit")
        if self.concurrency < 1:
            raise ValueError("need concurrency >= 1")
        if self.lease_s <= self.publish_timeout_s:
            raise ValueError("lease_s must exceed publish_timeout_s")
        if not 0 <= self.replay_window_s <= self.retention_s:
            raise ValueError("need 0 <= replay_window_s <= retention_s")

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

    async def publish(self, records: Sequence[OutboxRecord]) -> list[Exception | None]:
        """Send ``records`` (of distinct keys: no order among them) together and wait for
        the broker's acknowledgements; per record, in order, ``None`` once acknowledged or
        why it was not. Raising fails them all."""
        ...

    def lost_acknowledged(self) -> str | None:
        """Why the broker lost records it had acknowledged, if it did since the last call
        (``None`` otherwise); each loss is reported once."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


def _by_key(records: Sequence[OutboxRecord]) -> list[list[OutboxRecord]]:
    """``records`` grouped by key, each group in id order, groups by their first record."""
    groups: dict[bytes, list[OutboxRecord]] = {}
    for record in records:
        groups.setdefault(record.key, []).append(record)
    return list(groups.values())


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
        self._last_gauges_ms = 0
        self._claiming = asyncio.Lock()

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
        await asyncio.gather(*(self._rounds() for _ in range(self._config.concurrency)))

    async def _rounds(self) -> None:
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
        """One round (scan, claim, publish, record, maybe refresh gauges and clean up); the
        rows claimed.

        Rounds of this relay scan and claim one at a time, so a round scans after the claims
        of the one before it have committed and skips their keys; the rest overlaps.
        """
        now = self._clock()
        async with self._claiming:
            candidates = await self._scan(now)
            claimed = await self._claim(candidates, now) if candidates else []
        if claimed:
            outcome = await self._publish(claimed)
            await self._record(outcome)
            loss = self._publisher.lost_acknowledged()
            if loss is not None:
                await self._replay(loss)
        if now - self._last_gauges_ms >= self._config.gauge_interval_s * 1000:
            self._last_gauges_ms = now
            await self._refresh_gauges()
        if now - self._last_cleanup_ms >= self._config.cleanup_interval_s * 1000:
            self._last_cleanup_ms = now
            await self._clean_up(now)
        return len(claimed)

    async def _scan(self, now: int) -> list[tuple[int, str]]:
        """Up to ``batch_size`` due, unleased rows in id order, none behind a blocked row of
        its key; reads pages of ``batch_size`` rows, doubling, up to ``scan_limit`` rows."""
        model, config = self._model, self._config
        blocked: set[str] = set()
        chosen: list[tuple[int, str]] = []
        examined, page, after = 0, config.batch_size, 0
        async with self._sessions() as session:
            while examined < config.scan_limit:
                limit = min(page, config.scan_limit - examined)
                rows = (
                    await session.execute(
                        select(
                            model.id, model.event_key, model.next_attempt_ms, model.claimed_until
                        )
                        .where(model.sent_ms.is_(None), model.id > after)
                        .order_by(model.id)
                        .limit(limit)
                    )
                ).all()
                for row_id, key, next_attempt_ms, claimed_until in rows:
                    if key in blocked:
                        continue
                    if next_attempt_ms > now or (
                        claimed_until is not None and claimed_until >= now
                    ):
                        blocked.add(key)
                        continue
                    chosen.append((row_id, key))
                    if len(chosen) >= config.batch_size:
                        return chosen
                examined += len(rows)
                if len(rows) < limit:
                    break
                after, page = rows[-1][0], page * 2
        return chosen

    async def _claim(self, chosen: Sequence[tuple[int, str]], now: int) -> list[OutboxRecord]:
        """Lease the ``chosen`` rows (those still free), keep the ones first in line for
        their key, in one transaction; the records to publish."""
        model = self._model
        ids = [row_id for row_id, _ in chosen]
        token = f"{self._relay_id}-{uuid.uuid4().hex[:12]}"
        async with self._sessions() as session:
            claim = await session.execute(
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
            if rowcount(claim) == 0:
                return []
            # Our rows and every pending row of their keys before the last of them, in one
            # read inside the claim's transaction: it sees every claim committed before
            # ours (one committed after ours cannot take a row before ours: it is leased).
            # An earlier row of a key that is not ours (claimed by a relay that raced us,
            # or waiting for its retry) must go first: ours of that key are released.
            rows = (
                await session.execute(
                    select(
                        model.id,
                        model.topic,
                        model.event_key,
                        model.payload,
                        model.headers,
                        model.attempts,
                        model.claimed_by,
                    )
                    .where(
                        model.sent_ms.is_(None),
                        model.event_key.in_({key for _, key in chosen}),
                        model.id <= max(ids),
                    )
                    .order_by(model.id)
                )
            ).all()
            behind_foreign: set[str] = set()
            kept: list[OutboxRecord] = []
            released: list[int] = []
            for row_id, topic, key, payload, headers, attempts, claimed_by in rows:
                if claimed_by != token:
                    behind_foreign.add(key)
                elif key in behind_foreign:
                    released.append(row_id)
                else:
                    kept.append(
                        OutboxRecord(
                            id=row_id,
                            topic=topic,
                            key=key.encode("utf-8"),
                            payload=payload,
                            headers=decode_headers(headers),
                            attempts=attempts,
                        )
                    )
            if released:
                await self._release(session, released, token)
            await session.commit()
        return kept

    async def _release(self, session: AsyncSession, ids: Sequence[int], token: str) -> None:
        model = self._model
        await session.execute(
            update(model)
            .where(model.id.in_(ids), model.claimed_by == token)
            .values(claimed_by=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        )

    async def _publish(self, records: Sequence[OutboxRecord]) -> _Outcome:
        """Publish in waves: each wave holds the next record of every key still going, sent
        together; a key's next record goes only once its previous one is acknowledged, and
        a key stops at its first failure (its later records are released)."""
        queues = [deque(rows) for rows in _by_key(records)]
        outcome = _Outcome(sent=[], failed=[], released=[])
        while queues:
            wave = [queue.popleft() for queue in queues]
            errors = await self._publish_wave(wave)
            going: list[deque[OutboxRecord]] = []
            for queue, record, error in zip(queues, wave, errors, strict=True):
                if error is None:
                    outcome.sent.append(record)
                    if queue:
                        going.append(queue)
                else:
                    outcome.failed.append((record, repr(error)[:ERROR_LENGTH]))
                    outcome.released.extend(later.id for later in queue)
            queues = going
        return outcome

    async def _publish_wave(self, wave: list[OutboxRecord]) -> list[Exception | None]:
        """The publisher's answer per record; all failed if it raised or timed out."""
        try:
            async with asyncio.timeout(self._config.publish_timeout_s):
                errors = await self._publisher.publish(wave)
        except Exception as exc:  # a timeout included; cancellation goes through
            return [exc] * len(wave)
        if len(errors) != len(wave):
            mismatch = RuntimeError(f"the publisher answered {len(errors)} of {len(wave)}")
            return [mismatch] * len(wave)
        return errors

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
        for topic, count in Counter(record.topic for record in outcome.sent).items():
            PUBLISHED.labels(self._name, topic).inc(count)
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

    async def _replay(self, loss: str) -> None:
        """Make the rows sent within the replay window pending again (the broker lost some
        of them; which ones it cannot say)."""
        window = self._config.replay_window_s
        if window <= 0:
            logger.error(
                "the broker lost acknowledged records; the replay window is off",
                extra={"outbox": self._name, "loss": loss},
            )
            return
        model = self._model
        horizon = self._clock() - int(window * 1000)
        async with self._sessions() as session:
            result = await session.execute(
                update(model)
                .where(model.sent_ms >= horizon)
                .values(sent_ms=None, attempts=0, next_attempt_ms=0, last_error=None)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        rows = rowcount(result)
        REPLAYED.labels(self._name).inc(rows)
        logger.warning(
            "the broker lost acknowledged records; outbox rows of the replay window sent again",
            extra={"outbox": self._name, "loss": loss, "rows": rows, "window_s": window},
        )
        self._signal.set()

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
