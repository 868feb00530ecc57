"""Transient write conflicts: how to recognise them, and one retry helper for every service.

Under concurrency MySQL/MariaDB may abort a transaction (deadlock victim, lock wait timeout,
and with MariaDB's snapshot isolation "record has changed since last read"), and SQLite may
answer "database is locked" once its busy timeout is spent. None of these says the write is
wrong; running the whole transaction again usually succeeds. A unit of work reports them as
:class:`WriteConflict` (see :mod:`kit.sql.unit_of_work`), and :func:`retry_on_conflict` /
:func:`transact` run the transaction again a few times with a small jittered back-off
(so colliding writers spread out) before raising the service's own error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Self, TypeVar

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_FIRST_DELAY_S = 0.005
# MySQL/MariaDB: 1213 ER_LOCK_DEADLOCK, 1205 ER_LOCK_WAIT_TIMEOUT, 1020 ER_CHECKREAD
# (a serialization failure under MariaDB's innodb_snapshot_isolation).
_MYSQL_TRANSIENT = frozenset({1213, 1205, 1020})
# SQLite: SQLITE_BUSY ("database is locked") and SQLITE_LOCKED ("database table is locked").
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")
# MySQL 1062 ER_DUP_ENTRY; SQLite reports "UNIQUE constraint failed".
_MYSQL_DUPLICATE_ENTRY = 1062

WRITE_CONFLICTS = Counter(
    "webook_sql_write_conflicts_total",
    "Transactions aborted by concurrent writers, by what followed (retried or exhausted).",
    ["outcome"],
)
_RETRIED = WRITE_CONFLICTS.labels("retried")
_EXHAUSTED = WRITE_CONFLICTS.labels("exhausted")


class WriteConflict(Exception):
    """The database aborted a transaction because of concurrent writers; retrying may work."""


def _driver_error(exc: BaseException) -> BaseException | None:
    return exc.orig if isinstance(exc, DBAPIError) else None


def is_write_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock, lock timeout, serialization failure or busy SQLite."""
    orig = _driver_error(exc)
    if orig is None:
        return False
    args = getattr(orig, "args", ())
    if args and args[0] in _MYSQL_TRANSIENT:
        return True
    message = str(orig)
    return any(text in message for text in _SQLITE_TRANSIENT)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether ``exc`` reports a duplicate unique key (rather than, say, a NOT NULL breach)."""
    orig = _driver_error(exc)
    if orig is None:
        return False
    args = getattr(orig, "args", ())
    if args and args[0] == _MYSQL_DUPLICATE_ENTRY:
        return True
    return "UNIQUE constraint failed" in str(orig)


def backoff_delay(attempt: int, first_delay: float = DEFAULT_FIRST_DELAY_S) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling from
    ``first_delay``, each drawn between half and one and a half times that."""
    return first_delay * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.5)


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]],
    *,
    exhausted: Callable[[], BaseException],
    attempts: int = DEFAULT_ATTEMPTS,
    first_delay: float = DEFAULT_FIRST_DELAY_S,
) -> T:
    """Run ``attempt`` until it does not raise :class:`WriteConflict`, at most ``attempts``
    times; then raise ``exhausted()`` (the service's error, chained to the last conflict).

    ``attempt`` must be a whole transaction (open, work, commit), so that running it again
    starts from a clean state.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    number = 1
    while True:
        try:
            return await attempt()
        except WriteConflict as exc:
            if number >= attempts:
                _EXHAUSTED.inc()
                logger.warning(
                    "write conflict; giving up", extra={"attempts": number, "error": str(exc)}
                )
                raise exhausted() from exc
            _RETRIED.inc()
            logger.info("write conflict; retrying", extra={"attempt": number, "error": str(exc)})
            await asyncio.sleep(backoff_delay(number, first_delay))
            number += 1


class UnitOfWork(AbstractAsyncContextManager[Any, None], Protocol):
    """One transaction: ``async with`` it, work, :meth:`commit`; leaving it uncommitted rolls
    back and releases the connection. Transient aborts leave it as :class:`WriteConflict`.

    A service's own unit-of-work protocol extends this one with its repository.
    """

    async def __aenter__(self) -> Self:
        """Begin."""
        ...

    async def commit(self) -> None:
        """Commit (then whatever must follow a commit, e.g. cache invalidation)."""
        ...


U = TypeVar("U", bound=UnitOfWork)


async def transact(
    units: Callable[[], U],
    work: Callable[[U], Awaitable[T]],
    *,
    exhausted: Callable[[], BaseException],
    attempts: int = DEFAULT_ATTEMPTS,
    first_delay: float = DEFAULT_FIRST_DELAY_S,
) -> T:
    """``work`` in a new unit of work from ``units``, committed, retried on conflict
    (:func:`retry_on_conflict`); what ``work`` returned."""

    async def attempt() -> T:
        uow = units()
        async with uow:
            result = await work(uow)
            await uow.commit()
            return result

    return await retry_on_conflict(
        attempt, exhausted=exhausted, attempts=attempts, first_delay=first_delay
    )
