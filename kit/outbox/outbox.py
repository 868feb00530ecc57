"""Recording events in the transaction that causes them.

:meth:`Outbox.add` stages an outbox row in the caller's session transaction: it is inserted
just before that transaction commits (one statement per outbox, however many rows) and is dropped
if the transaction rolls back, so an event is recorded if and only if its change is. The
rows are plain values, not ORM objects, and the ``INSERT`` (rendered once per outbox and SQL
dialect) goes straight to the driver's cursor on the transaction's connection: an ORM insert,
or even a Core statement, costs more CPU than the row costs the database, and a publication
pays it on every call (``docs/performance.md``, "Transactional outbox"). Driver errors are
raised as SQLAlchemy's (``sqlalchemy.exc.DBAPIError`` subclasses), as any statement's.
:class:`~kit.outbox.relay.OutboxRelay` publishes the rows afterwards. :meth:`Outbox.bound`
gives the same thing the shape of :meth:`kit.events.EventProducer.publish`, so one event
writer serves both paths.

The trace context of the request is captured when the row is added (a ``PRODUCER`` span,
as the buffered producer does) and sent as the record's headers, so the consumer's batch
still links to the request that caused the event however late the relay publishes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence

from google.protobuf.message import Message
from opentelemetry import trace
from sqlalchemy import Table, event, insert, inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from kit.events import DeclaredTopic, encode_key
from kit.events.tracing import TRACER_NAME, publish_trace_headers
from kit.outbox.table import KEY_LENGTH, OutboxRow

Headers = Sequence[tuple[str, bytes]]
OutboxKey = str | int
_WAKE_INFO = "kit.outbox.wake"
_STAGED = "kit.outbox.staged"
# The columns a new row sets, in the order of a staged row's values.
_COLUMNS: tuple[str, ...] = (
    "topic",
    "event_key",
    "payload",
    "headers",
    "created_ms",
    "attempts",
    "next_attempt_ms",
)
Row = tuple[object, ...]


def now_ms() -> int:
    """Wall-clock milliseconds (rows compare times across processes)."""
    return time.time_ns() // 1_000_000


def encode_headers(headers: Headers) -> str:
    """The ``headers`` column of record headers (a JSON object of text values)."""
    return json.dumps({name: value.decode("utf-8") for name, value in headers})


def decode_headers(text: str) -> list[tuple[str, bytes]]:
    """Record headers from the ``headers`` column."""
    loaded: dict[str, str] = json.loads(text) if text else {}
    return [(name, value.encode("utf-8")) for name, value in loaded.items()]


class UnknownTopic(ValueError):
    """An event for a topic the outbox was not told about, or with another payload."""


class Outbox:
    """Where a service records its events, inside its own transactions.

    Args:
        model: the service's outbox class (:func:`kit.outbox.outbox_model`).
        topics: the declared topics this outbox accepts (``kit.events.declared_topic``); an
            event for another topic, or whose payload is not the declared message, is
            refused. Empty: any topic, any payload.
        tracer_provider: where publish spans go (the global provider by default).
    """

    def __init__(
        self,
        model: type[OutboxRow],
        *,
        topics: Iterable[DeclaredTopic] = (),
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.model = model
        self._table: Table = inspect(model).local_table
        _listen()
        self._payloads = {topic.name: topic.payload.full_name for topic in topics}
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._committed: list[asyncio.Event] = []
        self._inserts: dict[str, tuple[str, tuple[int, ...] | None]] = {}

    @property
    def table_name(self) -> str:
        """The outbox table's name (also the ``outbox`` label of its metrics)."""
        return str(self._table.name)

    def add(
        self,
        session: AsyncSession,
        topic: str,
        key: OutboxKey,
        payload: Message,
        headers: Headers | None = None,
    ) -> None:
        """Stage ``payload`` for ``topic`` keyed by ``key`` in ``session``'s transaction.

        The row is inserted when the transaction commits (so it is not visible to queries
        in the transaction before) and shares its fate; ``session`` begins a transaction if
        it has none. ``headers`` default to the current trace context. Raises
        :class:`UnknownTopic` for a topic or payload the outbox does not accept, and
        ``RuntimeError`` inside a savepoint.
        """
        self._check(topic, payload)
        encoded_key = encode_key(key).decode("utf-8")
        if len(encoded_key) > KEY_LENGTH:
            raise ValueError(f"outbox keys are at most {KEY_LENGTH} characters")
        transaction = session.sync_session
        if transaction.in_nested_transaction():
            # A savepoint rolled back would not take its staged rows with it.
            raise RuntimeError("outbox rows cannot be added inside a savepoint")
        if not transaction.in_transaction():
            transaction.begin()  # so that its end, commit or rollback, settles the rows
        at = now_ms()
        staged: dict[Outbox, list[Row]] = transaction.info.setdefault(_STAGED, {})
        staged.setdefault(self, []).append(
            (
                topic,
                encoded_key,
                payload.SerializeToString(),
                encode_headers(self._trace_headers(topic) if headers is None else headers),
                at,
                0,
                at,
            )
        )
        self._wake_after_commit(transaction)

    def _insert_rows(self, connection: Connection, rows: Sequence[Row]) -> None:
        """Insert staged ``rows`` through ``connection``'s driver, in its transaction.

        The statement is rendered by the connection's dialect the first time, with its own
        parameter markers; the values are plain ``str``, ``int`` and ``bytes``, which every
        driver takes as they are, so no type processing is skipped. aiosqlite runs each call
        in its own thread: one row goes through its ``execute_insert``, which opens, runs and
        closes a cursor in one trip there (a cursor of our own takes three).
        """
        dialect = connection.dialect
        sql, order = self._insert_for(dialect)
        params = rows if order is None else [tuple(row[i] for i in order) for row in rows]
        driver = connection.connection.driver_connection
        cursor = None
        try:
            if dialect.driver == "aiosqlite" and driver is not None and len(params) == 1:
                await_only(driver.execute_insert(sql, params[0]))
                return
            cursor = connection.connection.cursor()
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)
        except dialect.loaded_dbapi.Error as exc:
            invalidated = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
            if invalidated:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                sql,
                list(params),
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,  # payloads (an article's content) stay out of logs
                connection_invalidated=invalidated,
                dialect=dialect,
                ismulti=len(params) > 1,
            ) from exc
        finally:
            if cursor is not None:
                cursor.close()

    def _insert_for(self, dialect: Dialect) -> tuple[str, tuple[int, ...] | None]:
        """The ``INSERT`` of one row in ``dialect``, and the order of a staged row's values
        its markers take (``None``: as staged)."""
        known = self._inserts.get(dialect.name)
        if known is None:
            if not dialect.positional:
                raise RuntimeError(f"the outbox needs a positional paramstyle, not {dialect.name}")
            compiled = insert(self._table).compile(dialect=dialect, column_keys=list(_COLUMNS))
            names = tuple(compiled.positiontup or ())
            if sorted(names) != sorted(_COLUMNS):
                raise RuntimeError(f"unexpected outbox insert parameters: {names}")
            order = tuple(_COLUMNS.index(name) for name in names)
            known = (compiled.string, None if order == tuple(range(len(order))) else order)
            self._inserts[dialect.name] = known
        return known

    def bound(self, session: AsyncSession) -> OutboxSink:
        """``add`` bound to ``session``, shaped as ``EventProducer.publish``."""
        return OutboxSink(self, session)

    def commit_signal(self) -> asyncio.Event:
        """An event set whenever a transaction that added rows commits (in this process);
        the relay waits on it between polls so that it publishes at once."""
        signal = asyncio.Event()
        self._committed.append(signal)
        return signal

    def _check(self, topic: str, payload: Message) -> None:
        if not self._payloads:
            return
        expected = self._payloads.get(topic)
        if expected is None:
            raise UnknownTopic(f"the outbox does not accept topic {topic!r}")
        if payload.DESCRIPTOR.full_name != expected:
            raise UnknownTopic(
                f"topic {topic!r} carries {expected}, not {payload.DESCRIPTOR.full_name}"
            )

    def _wake_after_commit(self, session: Session) -> None:
        if not self._committed:
            return
        waiting: set[Outbox] = session.info.setdefault(_WAKE_INFO, set())
        # A rolled-back session keeps the mark: a later commit of it only wakes early.
        waiting.add(self)

    def _wake(self) -> None:
        for signal in self._committed:
            signal.set()

    def _trace_headers(self, topic: str) -> list[tuple[str, bytes]]:
        return publish_trace_headers(topic, self._tracer, self._tracer_provider)


def _listen() -> None:
    """Listen, once per process, to the sessions' commits (for every outbox: what each
    session staged is in its ``info``; listening per session would cost more than a row)."""
    for name, listener in (
        ("before_commit", _insert_staged),
        ("after_transaction_end", _drop_staged),
        ("after_commit", _wake_committed),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _insert_staged(session: Session) -> None:
    """Before a commit: insert the rows the transaction staged (also when a savepoint is
    released: they then commit or roll back with the enclosing transaction)."""
    staged: dict[Outbox, list[Row]] | None = session.info.pop(_STAGED, None)
    if not staged:
        return
    connection = session.connection()
    for outbox, rows in staged.items():
        outbox._insert_rows(connection, rows)


def _drop_staged(session: Session, transaction: SessionTransaction) -> None:
    """When a session's transaction ends without inserting them (a rollback, a close):
    forget the rows it staged."""
    if transaction.parent is None:
        session.info.pop(_STAGED, None)


def _wake_committed(session: Session) -> None:
    """After any commit: wake the relays of the outboxes the transaction added rows to."""
    waiting: set[Outbox] | None = session.info.pop(_WAKE_INFO, None)
    for outbox in waiting or ():
        outbox._wake()


class OutboxSink:
    """An :class:`Outbox` bound to one session, with ``EventProducer.publish``'s shape."""

    def __init__(self, outbox: Outbox, session: AsyncSession) -> None:
        self._outbox = outbox
        self._session = session

    def publish(self, topic: str, key: OutboxKey, event: Message) -> bool:
        """Stage ``event`` in the session's transaction; always ``True`` (never dropped)."""
        self._outbox.add(self._session, topic, key, event)
        return True
