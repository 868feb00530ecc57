"""kit.sql on SQLite and MariaDB: schema helpers, upsert, insert-ignore, write conflicts.

The conflicts are real: one connection holds a row's write lock while a unit of work tries
to change it, so MariaDB answers "lock wait timeout" and SQLite "database is locked"; both
must leave the unit of work as :class:`WriteConflict`, which :func:`transact` retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from kit.sql import (
    DEFAULT_ATTEMPTS,
    MYSQL_TABLE_OPTIONS,
    SessionDAO,
    SessionFactory,
    SqlUnitOfWork,
    WriteConflict,
    backoff_delay,
    create_engine,
    insert_ignore,
    is_unique_violation,
    is_write_conflict,
    retry_on_conflict,
    service_metadata,
    session_factory,
    table_args,
    transact,
    upsert,
)

METADATA = service_metadata()
_OPTIONS: dict[str, Any] = dict(MYSQL_TABLE_OPTIONS)
COUNTS = Table(
    "kit_sql_test_counts",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biz", String(32), nullable=False),
    Column("biz_id", BigInteger, nullable=False),
    Column("cnt", BigInteger, nullable=False),
    Column("utime", BigInteger, nullable=False),
    UniqueConstraint("biz", "biz_id"),
    Index(None, "biz", "cnt"),
    **_OPTIONS,
)


def test_constraint_and_index_names_follow_the_convention() -> None:
    assert {c.name for c in COUNTS.constraints} >= {
        "pk_kit_sql_test_counts",
        "uq_kit_sql_test_counts_biz_biz_id",
    }
    assert {i.name for i in COUNTS.indexes} == {"ix_kit_sql_test_counts_biz_cnt"}
    assert COUNTS.kwargs["mysql_charset"] == "utf8mb4"
    assert table_args(COUNTS.c.id) == (COUNTS.c.id, MYSQL_TABLE_OPTIONS)


@pytest.fixture
async def engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh SQLite file or the session's MariaDB, with the test table."""
    engine = create_engine(empty_database_url)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.drop_all)
        await conn.run_sync(METADATA.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.drop_all)
        await engine.dispose()


async def _rows(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        result = await conn.execute(select(COUNTS.c.biz_id, COUNTS.c.cnt))
        return {int(biz_id): int(cnt) for biz_id, cnt in result.all()}


def _row(biz_id: int, cnt: int) -> dict[str, Any]:
    return {"biz": "article", "biz_id": biz_id, "cnt": cnt, "utime": 1}


async def test_upsert_inserts_then_changes_existing_rows(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        await upsert(
            session,
            COUNTS,
            [_row(1, 3), _row(2, 4)],
            conflict=("biz", "biz_id"),
            changes={"utime": 1},
        )
        with pytest.raises(ValueError, match="insert_ignore"):
            await upsert(session, COUNTS, _row(1, 1), conflict=("biz", "biz_id"), changes={})
        # Multi-row, from the proposed values: add them to what is stored.
        await upsert(
            session,
            COUNTS,
            [_row(1, 10), _row(3, 5)],
            conflict=("biz", "biz_id"),
            changes=lambda incoming: {"cnt": COUNTS.c.cnt + incoming["cnt"]},
        )
        # One row, fixed expressions.
        await upsert(
            session,
            COUNTS,
            _row(2, 0),
            conflict=("biz", "biz_id"),
            changes={"cnt": COUNTS.c.cnt - 1, "utime": 9},
        )
        await session.commit()
    assert await _rows(engine) == {1: 13, 2: 3, 3: 5}


async def test_insert_ignore_counts_only_new_rows(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        dao = SessionDAO(session)
        assert await dao.insert_ignore(COUNTS, _row(1, 7)) == 1
        assert await dao.insert_ignore(COUNTS, _row(1, 99)) == 0
        assert await insert_ignore(session, COUNTS, [_row(1, 5), _row(2, 5)]) == 1
        await session.commit()
    assert await _rows(engine) == {1: 7, 2: 5}


async def test_a_duplicate_key_is_a_unique_violation(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(COUNTS.insert().values(_row(1, 1)))
        with pytest.raises(IntegrityError) as caught:
            await conn.execute(COUNTS.insert().values(_row(1, 2)))
    assert is_unique_violation(caught.value)
    assert not is_write_conflict(caught.value)


class _Repo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.committed: list[int] = []

    async def bump(self, biz_id: int) -> None:
        if self.session.get_bind().dialect.name == "sqlite":
            await self.session.execute(text("PRAGMA busy_timeout = 100"))
        else:
            await self.session.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        await self.session.execute(
            COUNTS.update().where(COUNTS.c.biz_id == biz_id).values(cnt=COUNTS.c.cnt + 1)
        )

    async def after_commit(self) -> None:
        self.committed.append(1)


class _Unit(SqlUnitOfWork[_Repo]):
    def __init__(self, sessions: SessionFactory) -> None:
        super().__init__(sessions, _Repo)


async def _hold_row_lock(conn: AsyncConnection, biz_id: int) -> None:
    """Take the write lock of the row (SQLite: of the database) until ``conn`` ends."""
    await conn.execute(COUNTS.update().where(COUNTS.c.biz_id == biz_id).values(utime=2))


async def test_a_locked_row_is_a_write_conflict_and_transact_retries(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(COUNTS.insert().values(_row(1, 0)))
    sessions = session_factory(engine)
    holder = await engine.connect()
    await holder.begin()
    await _hold_row_lock(holder, 1)

    async def bump_once() -> None:
        async with _Unit(sessions) as uow:
            await uow.repository.bump(1)
            await uow.commit()

    try:
        with pytest.raises(WriteConflict):
            await bump_once()
    finally:
        await holder.rollback()
        await holder.close()

    # The next attempt finds the lock released (the holder gives it up after a conflict).
    holders: list[AsyncConnection] = []
    repositories: list[_Repo] = []

    async def work(uow: _Unit) -> int:
        repositories.append(uow.repository)
        if not holders:
            holder = await engine.connect()
            holders.append(holder)
            await holder.begin()
            await _hold_row_lock(holder, 1)
        try:
            await uow.repository.bump(1)
        except OperationalError:
            await holders[0].rollback()
            await holders[0].close()
            raise
        return len(repositories)

    attempts = await transact(lambda: _Unit(sessions), work, exhausted=RuntimeError)
    assert attempts == 2
    assert [r.committed for r in repositories] == [[], [1]]
    assert await _rows(engine) == {1: 1}


def test_conflicts_are_recognised_by_code_or_message() -> None:
    def error(*args: object) -> OperationalError:
        return OperationalError("UPDATE t", {}, Exception(*args))

    for code in (1213, 1205, 1020):
        assert is_write_conflict(error(code, "try restarting transaction"))
    assert is_write_conflict(error("database is locked"))
    assert is_write_conflict(error("database table is locked"))
    assert not is_write_conflict(error(1146, "Table doesn't exist"))
    assert not is_write_conflict(ValueError("database is locked"))
    assert is_unique_violation(error(1062, "Duplicate entry"))
    assert is_unique_violation(error("UNIQUE constraint failed: t.k"))


def test_backoff_doubles_with_jitter() -> None:
    for attempt in range(1, 6):
        nominal = 0.01 * 2 ** (attempt - 1)
        for _ in range(50):
            assert nominal * 0.5 <= backoff_delay(attempt, 0.01) <= nominal * 1.5


class _GaveUp(Exception):
    pass


async def test_retry_gives_up_with_the_services_error_after_the_last_attempt() -> None:
    calls: list[int] = []

    async def always_conflicting() -> None:
        calls.append(1)
        raise WriteConflict("deadlock")

    with pytest.raises(_GaveUp) as caught:
        await retry_on_conflict(always_conflicting, exhausted=_GaveUp, first_delay=0.001)
    assert len(calls) == DEFAULT_ATTEMPTS
    assert isinstance(caught.value.__cause__, WriteConflict)

    async def conflicting_twice() -> str:
        calls.append(1)
        if len(calls) <= DEFAULT_ATTEMPTS + 2:
            raise WriteConflict("deadlock")
        return "done"

    assert await retry_on_conflict(conflicting_twice, exhausted=_GaveUp, attempts=3) == "done"

    async def failing() -> None:
        calls.append(1)
        raise LookupError("not a conflict")

    before = len(calls)
    with pytest.raises(LookupError):
        await retry_on_conflict(failing, exhausted=_GaveUp)
    assert len(calls) == before + 1
    with pytest.raises(ValueError, match="at least 1"):
        await retry_on_conflict(failing, exhausted=_GaveUp, attempts=0)


def test_a_lock_wait_timeout_is_whole_seconds() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        create_engine("mysql+asyncmy://root@127.0.0.1:3306/none", lock_wait_timeout_s=0)
