"""Alembic migrations, one history per service.

Each service keeps its revisions in ``services/<svc>/migrations`` and its own version table
(``alembic_version_<svc>``) so that services may share one database in small deployments.
:func:`upgrade` applies them programmatically (``make run``, tests, ``python -m services.<svc>
migrate``); :func:`run_env` is what every service's ``env.py`` calls.

**One migration at a time.** On MySQL/MariaDB, :func:`run_env` holds the server's named lock
``webook-migrate-<service>`` (``GET_LOCK``, on a connection of its own) while the revisions
run, and logs "waiting for the migration lock" when another process holds it: two
``migrate`` runs started together (a re-run release Job, an operator by hand) apply the
revisions once, the second finding the schema at head. The wait is bounded
(``lock_timeout_s``, then :class:`MigrationLockTimeout`). SQLite needs no lock beyond the
file's own.

**Waiting for the schema.** In Kubernetes the migrations run once per release, in the
``webook-migrate`` Job, and each service pod waits in an init container
(``python -m services.<svc> wait-for-schema``, :func:`wait_for_schema`) until the database
is at the head revision of the code it runs, or at a revision that code does not know (a
newer release's: the schema only ever grows compatibly, docs/persistence.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.errors import AppError
from kit.sql import create_engine

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S: Final = 600.0
"""How long a migration waits for another one of the same service before giving up."""
_MYSQL_DIALECTS: Final = frozenset({"mysql", "mariadb"})


class MigrationLockTimeout(AppError):
    """Another process held the service's migration lock for longer than the wait allowed."""


class SchemaNotReady(AppError):
    """The database did not reach the schema the code needs within the wait allowed."""


def migration_lock_name(service: str) -> str:
    """The MySQL named lock that serialises ``service``'s migrations (at most 64 chars)."""
    name = f"webook-migrate-{service}"
    if len(name) > 64:
        raise ValueError(f"lock name {name!r} is longer than MySQL's 64 characters")
    return name


def alembic_config(
    service: str, database_url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Config:
    """An Alembic config for ``services.<service>.migrations`` against ``database_url``."""
    script_location = resources.files(f"services.{service}") / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    cfg.attributes["lock_timeout_s"] = lock_timeout_s
    return cfg


def upgrade(
    service: str,
    database_url: str,
    revision: str = "head",
    *,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> None:
    """Apply ``service``'s migrations up to ``revision`` (blocking; use a thread in async code).

    On MySQL/MariaDB under the service's migration lock (module docstring), waiting at most
    ``lock_timeout_s`` for it (:class:`MigrationLockTimeout` after).
    """
    command.upgrade(alembic_config(service, database_url, lock_timeout_s=lock_timeout_s), revision)


async def upgrade_async(service: str, database_url: str, revision: str = "head") -> None:
    """:func:`upgrade` without blocking the event loop."""
    await asyncio.to_thread(upgrade, service, database_url, revision)


def run_env(metadata: MetaData) -> None:
    """Body of a service's ``migrations/env.py``: run online migrations on an async engine."""
    config = context.config
    service = config.attributes.get("service", "default")
    lock_timeout_s = float(config.attributes.get("lock_timeout_s", DEFAULT_LOCK_TIMEOUT_S))
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set")

    def do_run(connection: Connection) -> None:
        opts: dict[str, Any] = {
            "connection": connection,
            "target_metadata": metadata,
            "version_table": f"alembic_version_{service}",
            "render_as_batch": connection.dialect.name == "sqlite",
        }
        context.configure(**opts)
        migration = context.get_context()
        before = migration.get_current_heads()
        with context.begin_transaction():
            context.run_migrations()
        after = migration.get_current_heads()
        logger.info(
            "migrations ran" if before != after else "schema already at the target revision",
            extra={
                "schema_of": service,
                "from_revision": ",".join(before) or None,
                "to_revision": ",".join(after) or None,
            },
        )

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with migration_lock(engine, service, lock_timeout_s):
                async with engine.connect() as conn:
                    await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(run())


@asynccontextmanager
async def migration_lock(
    engine: AsyncEngine, service: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> AsyncIterator[None]:
    """Hold ``service``'s migration lock on MySQL/MariaDB for the block (nothing on SQLite).

    The lock lives on a connection of its own, in autocommit, so that the migration's DDL
    (which commits implicitly) and its transactions cannot release it; the server also frees
    it if this process dies. Logs when another process holds it and this one waits.
    """
    if engine.dialect.name not in _MYSQL_DIALECTS:
        yield
        return
    name = migration_lock_name(service)
    async with engine.connect() as lock_conn:
        conn = await lock_conn.execution_options(isolation_level="AUTOCOMMIT")
        taken = await conn.scalar(text("SELECT GET_LOCK(:name, 0)"), {"name": name})
        if taken != 1:
            holder = await conn.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
            logger.info(
                "waiting for the migration lock",
                extra={"schema_of": service, "lock": name, "holder_connection": holder},
            )
            started = time.monotonic()
            # GET_LOCK counts whole seconds; a fraction would be truncated to no wait at all.
            taken = await conn.scalar(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": name, "timeout": max(1, round(timeout_s))},
            )
            if taken != 1:
                raise MigrationLockTimeout(
                    "MIGRATION_LOCK_TIMEOUT",
                    f"another {service} migration held {name} for more than {timeout_s:g} s",
                )
            waited = round(time.monotonic() - started, 3)
            logger.info(
                "migration lock taken after waiting",
                extra={"schema_of": service, "lock": name, "waited_s": waited},
            )
        try:
            yield
        finally:
            await conn.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


SchemaState = Literal["at_head", "behind", "ahead"]


@dataclass(frozen=True)
class SchemaStatus:
    """Where ``service``'s schema in a database stands against the code's revisions.

    ``state``: ``at_head`` (the database is at the code's head), ``behind`` (no version
    table yet, or an older revision: the release's migrations have not run), ``ahead`` (a
    revision this code does not know: a newer release migrated, and its schema is a
    compatible superset for the code still running).
    """

    state: SchemaState
    database: tuple[str, ...]
    code: tuple[str, ...]


def code_heads(service: str) -> tuple[str, ...]:
    """The head revision(s) of ``service``'s migrations in this code."""
    script = ScriptDirectory.from_config(alembic_config(service, "sqlite://"))
    return tuple(sorted(script.get_heads()))


async def schema_status(service: str, database_url: str) -> SchemaStatus:
    """How ``service``'s schema in ``database_url`` compares with the code (read only)."""
    script = ScriptDirectory.from_config(alembic_config(service, database_url))
    heads = tuple(sorted(script.get_heads()))

    def current(connection: Connection) -> tuple[str, ...]:
        migration = MigrationContext.configure(
            connection, opts={"version_table": f"alembic_version_{service}"}
        )
        return tuple(sorted(migration.get_current_heads()))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            database = await conn.run_sync(current)
    finally:
        await engine.dispose()
    known = {revision.revision for revision in script.walk_revisions()}
    state: SchemaState
    if database == heads:
        state = "at_head"
    elif database and not set(database) <= known:
        state = "ahead"
    else:
        state = "behind"
    return SchemaStatus(state, database, heads)


async def wait_for_schema(
    service: str, database_url: str, *, timeout_s: float = 900.0, interval_s: float = 2.0
) -> SchemaStatus:
    """Poll until ``service``'s schema is at the code's head (or ahead of it); its status.

    A database that cannot be reached yet counts as not ready. Raises
    :class:`SchemaNotReady` after ``timeout_s`` (the pod's init container then fails and
    is restarted by the kubelet, with back-off).
    """
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        problem: str
        try:
            status = await schema_status(service, database_url)
        except Exception as exc:  # any connection failure: the server may be starting
            problem = f"database unreachable: {type(exc).__name__}"
        else:
            if status.state != "behind":
                if status.state == "ahead":
                    logger.warning(
                        "schema is at a revision this code does not know (a newer release's)",
                        extra={"schema_of": service, "database_revision": status.database},
                    )
                return status
            problem = f"schema at {list(status.database)}, code at {list(status.code)}"
        if time.monotonic() >= deadline:
            raise SchemaNotReady(
                "SCHEMA_NOT_READY",
                f"{service}: the schema did not reach the code's revision in {timeout_s:g} s "
                f"({problem}); has the release's webook-migrate Job run?",
            )
        if not announced:
            logger.info("waiting for the schema", extra={"schema_of": service, "reason": problem})
            announced = True
        await asyncio.sleep(interval_s)


def schema_drift(connection: Connection, metadata: MetaData, service: str) -> list[object]:
    """Differences between ``metadata`` and the database, for ``service``'s tables only.

    Services may share a database (small deployments, the test suite), so tables that are
    not in ``metadata`` are someone else's and are ignored. An empty list means the
    migrations produce exactly the models.
    """
    own_tables = set(metadata.tables)

    def only_ours(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in own_tables

    context = MigrationContext.configure(
        connection,
        opts={"version_table": f"alembic_version_{service}", "include_object": only_ours},
    )
    return list(compare_metadata(context, metadata))


async def migrated_and_emptied(service: str, database_url: str, metadata: MetaData) -> str:
    """Apply ``service``'s migrations, then delete every row of its own tables (tests).

    A SQLite file is fresh per test; a MySQL database is shared by a whole test session (and
    by other services' tables, which are left alone), hence the DELETEs, children first.
    """
    await upgrade_async(service, database_url)
    if not database_url.startswith("sqlite"):
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(table.delete())
        finally:
            await engine.dispose()
    return database_url
