"""The command line every service process shares: ``python -m services.<svc> [serve|migrate]``.

``serve`` (the default) configures logging and tracing, builds the process with the
service's ``build_runner`` *inside* the event loop (``grpc.aio`` binds its server to the
running loop) and runs it until SIGTERM/SIGINT. ``migrate`` applies the service's Alembic
migrations to its ``database_url`` and exits. Settings come from the environment (the
service's ``WEBOOK_<SVC>_`` prefix) and optionally ``--env-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

from kit.config import GrpcServiceSettings, load_settings
from kit.grpcx.server import ServiceRunner
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.observability.tracing import configure_tracing

logger = logging.getLogger(__name__)


SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of a SQLite database file (``.run/`` on a fresh clone)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def migrate(service: str, database_url: str) -> None:
    """Apply ``service``'s migrations to ``database_url``."""
    ensure_sqlite_directory(database_url)
    upgrade(service, database_url)
    logger.info("migrations applied")


def run_service(
    service: str,
    settings_type: type[SettingsT],
    build_runner: Callable[[SettingsT], ServiceRunner],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the command line and run ``serve`` or ``migrate`` for ``service``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument(
        "--env-file", type=Path, help=f"dotenv file with WEBOOK_{service.upper()}_* settings"
    )
    args = parser.parse_args(argv)
    settings = load_settings(settings_type, env_file=args.env_file)
    configure_logging(service, settings.log_level)
    if args.command == "migrate":
        migrate(service, settings.database_url)
        return
    ensure_sqlite_directory(settings.database_url)
    provider = configure_tracing(
        service, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio
    )

    async def serve() -> None:
        await build_runner(settings).serve()

    try:
        asyncio.run(serve())
    finally:
        provider.shutdown()
