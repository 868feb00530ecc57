"""Apply several services' migrations in one process: ``python -m devstack.migrate user sms``.

What ``python -m services.<name> migrate`` does for one service (create a SQLite file's
directory, then :func:`kit.migrations.upgrade`), for each service named, one after the
other, each to its ``WEBOOK_<NAME>_DATABASE_URL``. A service whose tables are being moved
(``WEBOOK_<NAME>_MIGRATION_DESTINATION_URL`` set, :mod:`kit.migrator`) gets the same
revisions on the destination and the validators' checkpoint table there, as its own
``migrate`` does. One interpreter importing the libraries once costs a small machine far
less than a process per service, which is why the local stack
(:class:`devstack.suite.Migrations`) uses it. It prints ``migrated <name>`` on stdout as
each one completes, so the launcher can start that service at once; logs go to stderr.
Exits non-zero at the first failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from devstack.catalog import MIGRATION_DESTINATION, spec
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.migrator import CheckpointStore
from kit.sql import create_engine, ensure_sqlite_directory, session_factory

logger = logging.getLogger("devstack.migrate")


async def _ensure_checkpoints(url: str) -> None:
    engine = create_engine(url)
    try:
        await CheckpointStore(session_factory(engine)).ensure_table()
    finally:
        await engine.dispose()


def migrate_service(name: str, url: str, destination: str = "") -> None:
    """The schema of service ``name`` on ``url`` and, when its tables are being moved, on
    ``destination`` with the validators' checkpoint table."""
    ensure_sqlite_directory(url)
    upgrade(name, url)
    if destination:
        ensure_sqlite_directory(destination)
        upgrade(name, destination)
        asyncio.run(_ensure_checkpoints(destination))
        logger.info("migration destination ready", extra={"component": name})


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate each service named on the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m devstack.migrate", description=__doc__)
    parser.add_argument("services", nargs="+", help="services with migrations, in order")
    args = parser.parse_args(argv)
    configure_logging("devstack-migrate")
    for name in args.services:
        prefix = spec(name).env_prefix
        variable = f"{prefix}DATABASE_URL"
        url = os.environ.get(variable, "")
        if not url:
            logger.error("no database URL", extra={"variable": variable})
            return 2
        migrate_service(name, url, os.environ.get(f"{prefix}{MIGRATION_DESTINATION}", ""))
        logger.info("migrations applied", extra={"component": name})
        sys.stdout.write(f"migrated {name}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
