"""SQLAlchemy async engine and session factory for MySQL (asyncmy) or SQLite (aiosqlite).

SQLite is the embedded default for ``make run``: it gets WAL journaling, a busy timeout and
foreign keys so that several connections in one process behave. MySQL gets pre-ping and
connection recycling so that a restarted server does not fail the first requests.

SQLite connections also get :func:`_stop_worker_once`: without it, a request cancelled while
SQLAlchemy closes its connection leaves a task that never ends, and the process then never
shuts down (see that function).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]


def _stop_worker_once(worker: Any) -> None:
    """Make ``stop()`` of an aiosqlite connection queue its stop request only once.

    When a task is cancelled while SQLAlchemy terminates a connection, SQLAlchemy closes it
    gracefully in a shielded task and, on the cancellation, also force-stops it. aiosqlite
    (0.22) then queues a second stop request from the graceful close after the first has
    already ended the worker thread, and awaits it forever: the shielded task never ends
    and ``asyncio.run`` hangs at shutdown. Later calls return the first request's future,
    which the worker thread resolves when it stops.
    """
    first_stop = worker.stop
    requested = False
    stopped: asyncio.Future[Any] | None = None

    def stop() -> asyncio.Future[Any] | None:
        nonlocal requested, stopped
        if not requested:
            requested = True
            stopped = first_stop()
        return stopped

    worker.stop = stop


def _guarded_sqlite_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    # Guarded before any connect listener runs: a cancellation inside one also terminates it.
    adapter = dialect.connect(*cargs, **cparams)
    _stop_worker_once(adapter._connection)
    return adapter


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL; ``None`` for another backend or an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database)
    return None


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of a SQLite database file (``.run/`` on a fresh clone)."""
    path = sqlite_file(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    url: str, *, echo: bool = False, lock_wait_timeout_s: int | None = None
) -> AsyncEngine:
    """An async engine tuned for the backend named by ``url``.

    ``lock_wait_timeout_s``: on MySQL/MariaDB, how long a statement of these sessions waits
    for another transaction's row lock before failing with a (retryable) lock-wait timeout
    instead of InnoDB's 50 s default. For a process that must not stall behind a peer frozen
    mid-transaction (the scheduler's take). Ignored on SQLite, whose writers queue on the
    database lock for ``busy_timeout``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "do_connect", _guarded_sqlite_connect)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url, echo=echo, pool_pre_ping=True, pool_recycle=1800, pool_size=10, max_overflow=20
    )
    if lock_wait_timeout_s is not None:
        if lock_wait_timeout_s < 1:
            raise ValueError("lock_wait_timeout_s must be at least 1 (InnoDB counts seconds)")
        statement = f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_timeout_s)}"

        def set_lock_wait_timeout(dbapi_connection: Any, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(statement)
            finally:
                cursor.close()

        event.listen(engine.sync_engine, "connect", set_lock_wait_timeout)
    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)
