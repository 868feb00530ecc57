"""What the benchmarks that run on SQLite and on a MariaDB server share.

:func:`database_options` adds ``--mysql-url`` and ``--sqlite-only``; :func:`run_measures`
runs a benchmark's measures in a temporary directory and turns a :class:`CheckFailed`
(a wrong result, not a slow one) into exit code 2. :func:`percentile` and :func:`ms` are the
figures' arithmetic and display.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

MYSQL_SERVER: Final = "mysql+asyncmy://root@127.0.0.1:3306"
"""The MariaDB/MySQL server a benchmark uses unless ``--mysql-url`` names another."""


class CheckFailed(RuntimeError):
    """A benchmark's result is wrong (not merely slow)."""


def database_options(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first paragraph, with the database options."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0] if doc else "")
    parser.add_argument("--mysql-url", default=MYSQL_SERVER, help="MariaDB/MySQL server URL")
    parser.add_argument("--sqlite-only", action="store_true", help="skip MariaDB")
    return parser


def mysql_server(args: argparse.Namespace) -> str | None:
    """The server to measure on, None with ``--sqlite-only``."""
    return None if args.sqlite_only else str(args.mysql_url)


def run_measures(measures: Callable[[Path], Coroutine[Any, Any, object]]) -> int:
    """Run ``measures(scratch)`` with a temporary ``scratch`` directory; 2 on a failed
    check (written to stderr), else 0: missed goals are reported, not failed."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            asyncio.run(measures(Path(tmp)))
        except CheckFailed as exc:
            sys.stderr.write(f"check failed: {exc}\n")
            return 2
    return 0


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    """Milliseconds for display."""
    return f"{seconds * 1000:.2f} ms"
