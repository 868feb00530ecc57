"""A SQLite connection closed while its task is cancelled does not leave a task behind.

SQLAlchemy terminates a connection whose transaction was interrupted: a graceful close in a
shielded task and, when the caller is cancelled meanwhile, a forced stop. Unguarded,
aiosqlite's graceful close then waits forever for a worker thread the forced stop already
ended, and a service on SQLite never finishes shutting down. ``kit.sql.create_engine``
guards every SQLite connection against that (``_stop_worker_once``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from kit.sql import create_engine

# Generous bound on work that takes milliseconds: it only turns a hang into a failure.
HANG = 60.0


async def test_graceful_close_then_forced_stop_both_finish(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'terminate.db'}")
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            adapter = raw.dbapi_connection
            assert adapter is not None
            # The order SQLAlchemy's terminate() uses when its caller is cancelled.
            graceful = asyncio.ensure_future(adapter._terminate_graceful_close())
            await asyncio.sleep(0)
            adapter._terminate_force_close()
            await asyncio.wait_for(graceful, HANG)
            worker = raw.driver_connection._thread  # type: ignore[union-attr]
            await asyncio.to_thread(worker.join, HANG)
            assert not worker.is_alive()
            await conn.invalidate()
    finally:
        await engine.dispose()


async def test_cancelled_transactions_leave_no_task_behind(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cancel.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    started = asyncio.Event()

    async def bump() -> None:
        while True:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
                started.set()

    before = asyncio.all_tasks()
    writers = [asyncio.create_task(bump()) for _ in range(40)]
    try:
        await asyncio.wait_for(started.wait(), HANG)
    finally:
        # Twice, as a server cancelling its handlers and then its loop closing do: the
        # second cancellation lands while SQLAlchemy closes the interrupted connections.
        for _ in range(2):
            for writer in writers:
                writer.cancel()
            await asyncio.sleep(0)
        await asyncio.gather(*writers, return_exceptions=True)
        await engine.dispose()
    # What the cancellations left running (connection closes) must end by itself.
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    if left:
        _, pending = await asyncio.wait(left, timeout=HANG)
        assert not pending, f"tasks never finished: {pending}"


@pytest.mark.parametrize("calls", [1, 3])
async def test_stop_requests_after_the_first_wait_for_it(tmp_path: Path, calls: int) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stop.db'}")
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            worker = raw.driver_connection
            assert worker is not None
            first = worker.stop()
            assert first is not None
            for _ in range(calls):
                assert worker.stop() is first
            await asyncio.wait_for(first, HANG)
            await conn.invalidate()
    finally:
        await engine.dispose()
