"""SQLAlchemy async engine and session factory for MySQL (asyncmy) or SQLite (aiosqlite).

SQLite is the embedded default for ``make run``: it gets WAL journaling, a busy timeout and
foreign keys so that several connections in one process behave. MySQL gets pre-ping and
connection recycling so that a restarted server does not fail the first requests.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]
RepositoryT = TypeVar("RepositoryT")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine tuned for the backend named by ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, echo=echo, pool_pre_ping=True, pool_recycle=1800, pool_size=10, max_overflow=20
    )


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


class SqlUnitOfWork(Generic[RepositoryT]):
    """One SQL transaction with a repository bound to its session (STYLE.md §4).

    ``async with uow:`` opens a session (the transaction begins with the first statement);
    :meth:`commit` commits and then runs :meth:`after_commit` (cache invalidation: the
    database first, then the cache); leaving the block without a commit rolls back. The
    session is always closed. Subclasses say how to build their repository and may translate
    database errors into their domain's (e.g. a deadlock into a retryable conflict).
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self._repository: RepositoryT | None = None
        self._committed = False

    def open_repository(self, session: AsyncSession) -> RepositoryT:
        """The repository working inside ``session``."""
        raise TypeError(f"{type(self).__name__} must implement open_repository")

    async def after_commit(self, repository: RepositoryT) -> None:
        """Work that must follow a successful commit (invalidate or update caches)."""

    def translate_block_error(self, exc: BaseException) -> BaseException | None:
        """A domain error to raise instead of ``exc``, raised inside the ``async with``."""
        return None

    def translate_commit_error(self, exc: Exception) -> BaseException | None:
        """A domain error to raise instead of ``exc``, raised by the commit."""
        return None

    @property
    def repository(self) -> RepositoryT:
        """The repository of this unit of work (only inside ``async with``)."""
        if self._repository is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._repository

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._repository = self.open_repository(self._session)
        self._committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session, self._repository = self._session, None, None
        if session is not None:
            try:
                if not self._committed:
                    await session.rollback()
            finally:
                await session.close()
        if exc is not None:
            translated = self.translate_block_error(exc)
            if translated is not None:
                raise translated from exc

    async def commit(self) -> None:
        """Commit, then run :meth:`after_commit`."""
        if self._session is None or self._repository is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        try:
            await self._session.commit()
        except Exception as exc:
            translated = self.translate_commit_error(exc)
            if translated is not None:
                raise translated from exc
            raise
        self._committed = True
        await self.after_commit(self._repository)
