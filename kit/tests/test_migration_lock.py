"""Migrations once, under the service's MySQL named lock; pods waiting for their schema.

Two real ``python -m services.user migrate`` processes are started against one scratch
MariaDB database while the test holds ``webook-migrate-user``: both are seen blocked in
``GET_LOCK`` and both log that they wait. Once the test lets go, exactly one applies the
revisions and the other finds the schema at head; the version table holds one row, at the
code's head. ``wait-for-schema`` is run as a process too: it waits while the schema is
missing and exits 0 once a migration has run, and fails after its timeout when none does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from kit.migrations import code_heads, migration_lock_name, schema_status
from kit.sql import create_engine, scratch_database
from kit.tests.process_env import process_env

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

SERVICE = "user"
DEADLINE_S = 90.0


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with scratch_database(prefix="webook_lock") as url:
        yield url


@dataclass
class Run:
    """A service command running as a process, its stderr (the JSON log) in a file."""

    process: subprocess.Popen[str]
    log: Path

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def finish(self) -> tuple[int, list[dict[str, Any]], str]:
        """Exit status, JSON log records and raw stderr (killed after the deadline)."""
        try:
            self.process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.records(), self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _start(database_url: str, log: Path, *command: str) -> Run:
    env = process_env(f"WEBOOK_{SERVICE.upper()}_", database_url=database_url, log_level="INFO")
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{SERVICE}", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    return Run(process, log)


async def _lock_waiters(conn: AsyncConnection, name: str) -> int:
    """Sessions blocked in GET_LOCK on ``name`` right now."""
    result = await conn.scalar(
        text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE :pattern AND ID <> CONNECTION_ID()"
        ),
        {"pattern": f"%GET_LOCK('{name}'%"},
    )
    return int(result or 0)


async def _wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.2)


async def test_two_migrations_at_once_wait_for_each_other_and_apply_once(
    database: str, tmp_path: Path
) -> None:
    name = migration_lock_name(SERVICE)
    engine = create_engine(database)
    runs: list[Run] = []
    try:
        async with engine.connect() as held:
            holder = await held.execution_options(isolation_level="AUTOCOMMIT")
            assert await holder.scalar(text("SELECT GET_LOCK(:n, 0)"), {"n": name}) == 1
            runs = [_start(database, tmp_path / f"migrate-{i}.log", "migrate") for i in (1, 2)]
            async with engine.connect() as watcher:
                watch = await watcher.execution_options(isolation_level="AUTOCOMMIT")

                async def both_blocked() -> bool:
                    for run in runs:
                        assert run.process.poll() is None, run.log.read_text()
                    return await _lock_waiters(watch, name) == 2

                await _wait_until(both_blocked, "both migrations blocked on the lock")
            # Nothing ran while the lock was held elsewhere.
            status = await schema_status(SERVICE, database)
            assert status.state == "behind"
            assert status.database == ()
            await holder.scalar(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        results = [run.finish() for run in runs]
    finally:
        for run in runs:
            run.stop()
        await engine.dispose()

    heads = code_heads(SERVICE)
    applied = 0
    for returncode, records, stderr in results:
        assert returncode == 0, stderr
        messages = [r["msg"] for r in records]
        assert "waiting for the migration lock" in messages, stderr
        (outcome,) = [
            r
            for r in records
            if r["msg"] in {"migrations ran", "schema already at the target revision"}
        ]
        assert outcome["to_revision"] == ",".join(heads)
        if outcome["msg"] == "migrations ran":
            assert outcome["from_revision"] is None
            applied += 1
        else:
            assert outcome["from_revision"] == ",".join(heads)
    assert applied == 1, "exactly one of the two applied the revisions"
    check = create_engine(database)
    try:
        async with check.connect() as conn:
            rows = (await conn.execute(text(f"SELECT * FROM alembic_version_{SERVICE}"))).all()
    finally:
        await check.dispose()
    assert [tuple(row) for row in rows] == [heads]


async def test_wait_for_schema_returns_once_the_release_migrated(
    database: str, tmp_path: Path
) -> None:
    args = ("wait-for-schema", "--interval", "0.5", "--timeout", "120")
    waiting = _start(database, tmp_path / "wait.log", *args)
    try:

        async def announced() -> bool:
            assert waiting.process.poll() is None, waiting.log.read_text()
            return any(r["msg"] == "waiting for the schema" for r in waiting.records())

        await _wait_until(announced, "the waiter found the schema missing")
        migrate = _start(database, tmp_path / "migrate.log", "migrate")
        returncode, _, stderr = migrate.finish()
        assert returncode == 0, stderr
        returncode, records, stderr = waiting.finish()
    finally:
        waiting.stop()
    assert returncode == 0, stderr
    (ready,) = [r for r in records if r["msg"] == "schema ready"]
    assert ready["state"] == "at_head"
    assert ready["revision"] == list(code_heads(SERVICE))


async def test_wait_for_schema_fails_when_no_migration_comes(database: str, tmp_path: Path) -> None:
    args = ("wait-for-schema", "--interval", "0.5", "--timeout", "2")
    returncode, _, stderr = _start(database, tmp_path / "wait.log", *args).finish()
    assert returncode == 1, stderr
    assert "webook-migrate" in stderr
    status = await schema_status(SERVICE, database)
    assert status.state == "behind"
