"""SQLAlchemy async engine and session factory for MySQL (asyncmy) or SQLite (aiosqlite).

SQLite is the embedded default for ``make run``: it gets WAL journaling, a busy timeout and
foreign keys so that several connections in one process behave. MySQL gets pre-ping and
connection recycling so that a restarted server does not fail the first requests, and a
bounded pool (:class:`PoolLimits`, from each service's ``database_pool_*`` settings): every
replica's pool counts against the server's ``max_connections`` (docs/persistence.md,
"Connection budget").

SQLite connections also get :func:`_stop_worker_once`: without it, a request cancelled while
SQLAlchemy closes its connection leaves a task that never ends, and the process then never
shuts down (see that function).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PoolLimits:
    """How many MySQL connections one engine may hold, and how long a checkout waits.

    ``size`` connections stay open; up to ``overflow`` more are opened under load and closed
    when returned; a session that finds all ``size + overflow`` in use waits ``timeout_s``
    for one, then fails (instead of queueing without bound). ``size + overflow`` is what one
    process may cost the server, the figure the connection budget counts.
    """

    size: int = 10
    overflow: int = 20
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.size < 1 or self.overflow < 0 or self.timeout_s <= 0:
            raise ValueError(f"invalid pool limits {self}: size >= 1, overflow >= 0, timeout > 0")

    @property
    def most(self) -> int:
        """The most connections the pool opens at once."""
        return self.size + self.overflow


DEFAULT_POOL = PoolLimits()


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
    url: str,
    *,
    echo: bool = False,
    lock_wait_timeout_s: int | None = None,
    pool: PoolLimits = DEFAULT_POOL,
) -> AsyncEngine:
    """An async engine tuned for the backend named by ``url``.

    ``pool``: the connection pool's bounds on MySQL/MariaDB (a service passes its
    ``database_pool`` settings); SQLite keeps SQLAlchemy's own pool, one file per process.

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
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout_s,
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
