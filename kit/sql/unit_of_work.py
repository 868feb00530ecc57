"""The base of every service's SQL unit of work.

``async with uow:`` opens a session (the transaction begins with the first statement);
:meth:`SqlUnitOfWork.commit` commits and then runs :meth:`~SqlUnitOfWork.after_commit`
(cache invalidation: the database first, then the cache); leaving the block without a
commit rolls back. The session is always closed. Transient aborts (deadlocks, lock
timeouts, busy SQLite) leave the block or the commit as
:class:`~kit.sql.conflicts.WriteConflict`, which :func:`kit.sql.transact` retries; a
subclass may translate other database errors into its domain's.

A service's unit of work is usually a :class:`CachingUnitOfWork`: its repository is built
from the session and the one cache the repository keeps up to date after each commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, Self, TypeVar, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql.conflicts import WriteConflict, is_write_conflict
from kit.sql.engine import SessionFactory

logger = logging.getLogger(__name__)

RepositoryT = TypeVar("RepositoryT")
CacheT = TypeVar("CacheT")


@runtime_checkable
class CommitHook(Protocol):
    """A repository with work that must follow its transaction's commit."""

    async def after_commit(self) -> None:
        """Invalidate or update the caches of what the transaction changed."""
        ...


class SqlUnitOfWork(Generic[RepositoryT]):
    """One SQL transaction with a repository bound to its session.

    Args:
        sessions: where the session comes from.
        repository: builds the repository working inside a session (or override
            :meth:`open_repository`).

    After a successful commit, a repository that is a :class:`CommitHook` gets its
    ``after_commit()`` (or override :meth:`after_commit`). Subclasses may translate
    database errors into their domain's (:meth:`translate_block_error`,
    :meth:`translate_commit_error`; by default transient aborts become
    :class:`WriteConflict` and everything else passes unchanged).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        repository: Callable[[AsyncSession], RepositoryT] | None = None,
    ) -> None:
        self._sessions = sessions
        self._open = repository
        self._session: AsyncSession | None = None
        self._repository: RepositoryT | None = None
        self._committed = False

    def open_repository(self, session: AsyncSession) -> RepositoryT:
        """The repository working inside ``session``."""
        if self._open is None:
            raise TypeError(f"{type(self).__name__} must implement open_repository")
        return self._open(session)

    async def after_commit(self, repository: RepositoryT) -> None:
        """Work that must follow a successful commit (the repository's :class:`CommitHook`)."""
        if isinstance(repository, CommitHook):
            await repository.after_commit()

    def translate_block_error(self, exc: BaseException) -> BaseException | None:
        """A domain error to raise instead of ``exc``, raised inside the ``async with`` (or
        by closing the session); ``None`` keeps ``exc``."""
        return _conflict(exc)

    def translate_commit_error(self, exc: Exception) -> BaseException | None:
        """A domain error to raise instead of ``exc``, raised by the commit."""
        return _conflict(exc)

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

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        session, self._session, self._repository = self._session, None, None
        if session is not None:
            try:
                try:
                    if not self._committed:
                        await session.rollback()
                finally:
                    await session.close()
            except Exception as cleanup:
                if exc is None:
                    self._raise_translated(cleanup)
                # The block's own error says more than the failed clean-up it caused.
                logger.debug("session clean-up failed", extra={"error": repr(cleanup)})
        if exc is not None:
            translated = self.translate_block_error(exc)
            if translated is not None:
                raise translated from exc

    def _raise_translated(self, exc: Exception) -> None:
        translated = self.translate_block_error(exc)
        if translated is not None:
            raise translated from exc
        raise exc

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


class CachingUnitOfWork(SqlUnitOfWork[RepositoryT], Generic[RepositoryT, CacheT]):
    """A unit of work whose repository works inside the session with one shared ``cache``.

    A subclass implements :meth:`open_repository` (with ``self.cache``) and may alias
    :attr:`repository` under its service's name (``articles = CachingUnitOfWork.repository``).
    """

    def __init__(self, sessions: SessionFactory, cache: CacheT) -> None:
        super().__init__(sessions)
        self.cache = cache


def _conflict(exc: BaseException) -> WriteConflict | None:
    return WriteConflict(str(getattr(exc, "orig", exc))) if is_write_conflict(exc) else None
