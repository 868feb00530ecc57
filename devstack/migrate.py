"""Apply several services' migrations in one process: ``python -m devstack.migrate user sms``.

What ``python -m services.<name> migrate`` does for one service (create a SQLite file's
directory, then :func:`kit.migrations.upgrade`), for each service named, one after the
other, each to its ``WEBOOK_<NAME>_DATABASE_URL``. One interpreter importing the libraries
once costs a small machine far less than a process per service, which is why the local
stack (:class:`devstack.suite.Migrations`) uses it. It prints ``migrated <name>`` on
stdout as each one completes, so the launcher can start that service at once; logs go to
stderr. Exits non-zero at the first failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from devstack.catalog import spec
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.sql import ensure_sqlite_directory

logger = logging.getLogger("devstack.migrate")


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate each service named on the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m devstack.migrate", description=__doc__)
    parser.add_argument("services", nargs="+", help="services with migrations, in order")
    args = parser.parse_args(argv)
    configure_logging("devstack-migrate")
    for name in args.services:
        variable = f"{spec(name).env_prefix}DATABASE_URL"
        url = os.environ.get(variable, "")
        if not url:
            logger.error("no database URL", extra={"variable": variable})
            return 2
        ensure_sqlite_directory(url)
        upgrade(name, url)
        logger.info("migrations applied", extra={"component": name})
        sys.stdout.write(f"migrated {name}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
