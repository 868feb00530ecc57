"""Alembic migrations, one history per service.

Each service keeps its revisions in ``services/<svc>/migrations`` and its own version table
(``alembic_version_<svc>``) so that services may share one database in small deployments.
:func:`upgrade` applies them programmatically (``make run``, tests, ``python -m services.<svc>
migrate``); :func:`run_env` is what every service's ``env.py`` calls.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from kit.sql import create_engine


def alembic_config(service: str, database_url: str) -> Config:
    """An Alembic config for ``services.<service>.migrations`` against ``database_url``."""
    script_location = resources.files(f"services.{service}") / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Apply ``service``'s migrations up to ``revision`` (blocking; use a thread in async code)."""
    command.upgrade(alembic_config(service, database_url), revision)


async def upgrade_async(service: str, database_url: str, revision: str = "head") -> None:
    """:func:`upgrade` without blocking the event loop."""
    await asyncio.to_thread(upgrade, service, database_url, revision)


def run_env(metadata: MetaData) -> None:
    """Body of a service's ``migrations/env.py``: run online migrations on an async engine."""
    config = context.config
    service = config.attributes.get("service", "default")
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
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(run())


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
