"""The local stack runs the catalog's table migrations (kit.migrator) in ``source_only`` mode.

A service the catalog gives a ``migration_destination`` gets its destination's URL (a SQLite
file beside the others, or ``<database>_<name>`` on MySQL) unless the developer's own setting
says otherwise; the stack's migrations upgrade the destination too and create the validators'
checkpoint table there; on MySQL the launcher creates the destination database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from devstack.__main__ import DevSettings, Stack, ensure_mysql_database
from devstack.catalog import CATALOG, MIGRATION_DESTINATION, spec
from devstack.suite import Infra, Migrations, service_env
from kit.migrator import CHECKPOINT_TABLE
from kit.sql import create_engine

MOVED = [entry.name for entry in CATALOG if entry.migration_destination]


def _infra(database_url: str, **kwargs: object) -> Infra:
    kwargs.setdefault("pki", None)
    return Infra(
        redis_url="redis://127.0.0.1:1/0",
        etcd_endpoints=["127.0.0.1:2"],
        kafka_bootstrap="127.0.0.1:3",
        database_url=database_url,
        **kwargs,  # type: ignore[arg-type]
    )


def _setting(name: str) -> str:
    return f"{spec(name).env_prefix}{MIGRATION_DESTINATION}"


def test_the_interactive_tables_move_under_the_stack_and_nothing_else_does() -> None:
    assert MOVED == ["interactive"]
    assert spec("interactive").migration_destination == "interactive_destination"


def test_the_destination_is_a_sqlite_file_beside_the_others(tmp_path: Path) -> None:
    infra = _infra(f"sqlite+aiosqlite:///{tmp_path}")

    env = service_env("interactive", infra, 1, {})

    assert (
        env[_setting("interactive")] == f"sqlite+aiosqlite:///{tmp_path}/interactive_destination.db"
    )
    assert (
        env["WEBOOK_INTERACTIVE_DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path}/interactive.db"
    )
    # No mode is set: the service's default, source_only, until an operator switches it.
    assert "WEBOOK_INTERACTIVE_MIGRATION_MODE" not in env
    for name in {entry.name for entry in CATALOG} - set(MOVED):
        assert _setting(name) not in service_env(name, infra, 1, {})


def test_on_mysql_the_destination_is_a_database_named_after_the_stacks() -> None:
    infra = _infra("mysql+asyncmy://root:secret@127.0.0.1:3306/webook?charset=utf8mb4")

    url = make_url(service_env("interactive", infra, 1, {})[_setting("interactive")])

    assert url.database == "webook_interactive_destination"
    assert (url.host, url.port, url.username, url.password) == ("127.0.0.1", 3306, "root", "secret")
    assert url.query == {"charset": "utf8mb4"}


def test_the_developers_setting_wins_and_can_turn_the_migration_off(tmp_path: Path) -> None:
    off = _infra(
        f"sqlite+aiosqlite:///{tmp_path}", overrides={"interactive": {_setting("interactive"): ""}}
    )
    elsewhere = f"sqlite+aiosqlite:///{tmp_path}/elsewhere.db"
    moved = _infra(
        f"sqlite+aiosqlite:///{tmp_path}",
        overrides={"interactive": {_setting("interactive"): elsewhere}},
    )

    assert service_env("interactive", off, 1, {})[_setting("interactive")] == ""
    assert service_env("interactive", moved, 1, {})[_setting("interactive")] == elsewhere


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _migrate(infra: Infra, log_dir: Path) -> None:
    migrations = Migrations(["interactive", "follow"], infra, log_dir)
    done: list[str] = []
    try:
        while migrations.pending:
            done += migrations.finished(wait=1.0)
    finally:
        migrations.close()
    done += migrations.finished()
    assert sorted(done) == ["follow", "interactive"]


@pytest.mark.integration
def test_the_stacks_migrations_upgrade_the_destination_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    infra = _infra(f"sqlite+aiosqlite:///{data}")

    _migrate(infra, tmp_path / "logs")

    source = _tables(infra.database_for("interactive"))
    destination = _tables(infra.migration_destination_for("interactive"))
    assert {"interactives", "user_likes", "user_collects"} <= source
    assert CHECKPOINT_TABLE not in source
    assert source | {CHECKPOINT_TABLE} == destination
    assert not (data / "follow_destination.db").exists()


def _mysql_server() -> str:
    return os.environ.get("WEBOOK_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")


def _drop(server: str, *databases: str) -> None:
    async def drop() -> None:
        engine = create_engine(server.rstrip("/") + "/")
        try:
            async with engine.connect() as conn:
                for database in databases:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        finally:
            await engine.dispose()

    asyncio.run(drop())


@pytest.mark.integration
@pytest.mark.mysql
def test_on_mysql_the_launcher_creates_the_destination_and_migrates_it(tmp_path: Path) -> None:
    server = _mysql_server().rstrip("/")
    database = f"webook_test_devstack_{uuid.uuid4().hex[:8]}"
    url = f"{server}/{database}?charset=utf8mb4"
    destination = f"{database}_interactive_destination"
    try:
        ensure_mysql_database(url)
        stack = Stack(DevSettings(mysql_url=url, run_dir=tmp_path), {"interactive": 1, "follow": 1})
        infra = _infra(url)
        stack.ensure_migration_destinations(infra)
        stack.ensure_migration_destinations(infra)  # already there: kept

        _migrate(infra, tmp_path / "logs")

        assert make_url(infra.migration_destination_for("interactive")).database == destination
        assert CHECKPOINT_TABLE in _tables(infra.migration_destination_for("interactive"))
        assert "interactives" in _tables(infra.migration_destination_for("interactive"))
        assert CHECKPOINT_TABLE not in _tables(url)
    finally:
        _drop(server, database, destination)
