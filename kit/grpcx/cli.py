"""The command line every service process shares: ``python -m services.<svc> [COMMAND]``.

``serve`` (the default) builds the process with the service's ``build_runner`` *inside* the
event loop (``grpc.aio`` binds its server to the running loop) and runs it until SIGTERM or
SIGINT. ``migrate`` applies the service's Alembic migrations to its ``database_url`` and
exits (under the service's migration lock on MySQL: :mod:`kit.migrations`).
``wait-for-schema`` waits until that database is at the schema the code needs, and exits: the
init container of a service pod, whose migrations the release's ``webook-migrate`` Job runs.
A service adds its own sub-commands, or replaces ``migrate``, with :class:`Command`.

Every command reads the settings from the environment (the service's ``WEBOOK_<SVC>_``
prefix) and optionally ``--env-file``, configures logging and, unless it opts out, tracing
(with the settings' ``trace_sample_ratio``). An :class:`~kit.errors.AppError` (an expected
failure: an index locked by another process, a source unreachable) ends the command with
one clear line on stderr and exit status 1, without a traceback.

Commands run on asyncio's own event loop, not uvloop (docs/performance.md, "uvloop and
httptools": the scheduler's SIGSTOP takeover chaos test failed twice in three runs with the
services on uvloop, not yet understood).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from kit.config import GrpcServiceSettings, load_settings
from kit.errors import AppError
from kit.grpcx.server import ServiceRunner
from kit.logging import configure_logging
from kit.migrations import upgrade, wait_for_schema
from kit.observability.tracing import configure_tracing
from kit.sql import ensure_sqlite_directory

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)

CommandResult = Coroutine[Any, Any, None] | None
"""What a command's ``run`` returns: nothing, or a coroutine run in a fresh event loop."""


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without arguments of its own."""


@dataclass(frozen=True)
class Command(Generic[SettingsT]):
    """A sub-command of a service's command line.

    ``run(settings, args)`` does the work; when it is a coroutine function, it runs in an
    event loop (build loop-bound clients inside it). ``arguments`` adds the command's own
    options to its parser. ``logs=False`` leaves logging alone (a command whose only output
    is its stdout), ``traced=False`` skips tracing (no spans worth exporting).
    """

    name: str
    help: str
    run: Callable[[SettingsT, argparse.Namespace], CommandResult]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    logs: bool = True
    traced: bool = True


def migrate(service: str, database_url: str) -> None:
    """Apply ``service``'s migrations to ``database_url``."""
    ensure_sqlite_directory(database_url)
    upgrade(service, database_url)
    logger.info("migrations applied")


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds to wait before failing (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between two looks at the version table (default: %(default)s)",
    )


def standard_commands(
    service: str, build_runner: Callable[[SettingsT], ServiceRunner]
) -> list[Command[SettingsT]]:
    """``serve``, ``migrate`` and ``wait-for-schema`` of ``service``."""

    async def serve(settings: SettingsT, args: argparse.Namespace) -> None:
        await build_runner(settings).serve()

    def apply_migrations(settings: SettingsT, args: argparse.Namespace) -> None:
        migrate(service, settings.database_url)

    async def wait(settings: SettingsT, args: argparse.Namespace) -> None:
        status = await wait_for_schema(
            service, settings.database_url, timeout_s=args.timeout, interval_s=args.interval
        )
        logger.info(
            "schema ready", extra={"state": status.state, "revision": list(status.database)}
        )

    return [
        Command("serve", "serve the gRPC API until SIGTERM or SIGINT (default)", serve),
        Command("migrate", "apply the schema migrations and exit", apply_migrations, traced=False),
        Command(
            "wait-for-schema",
            "wait until the database is at this code's schema revision (or newer), then exit",
            wait,
            _wait_arguments,
            traced=False,
        ),
    ]


def build_parser(
    service: str, commands: Sequence[Command[Any]], description: str | None = None
) -> argparse.ArgumentParser:
    """The parser of ``python -m services.<service>``: one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=description or f"The {service} service: its gRPC API and commands.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env_help = f"dotenv file with WEBOOK_{service.upper()}_* settings"
    parser.add_argument("--env-file", type=Path, help=env_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        command_parser = sub.add_parser(command.name, help=command.help)
        # Accepted after the command too (``serve --env-file x``), as before sub-commands.
        command_parser.add_argument(
            "--env-file", type=Path, help=env_help, default=argparse.SUPPRESS
        )
        command.arguments(command_parser)
    return parser


def parse_command(
    service: str,
    build_runner: Callable[[SettingsT], ServiceRunner],
    argv: Sequence[str] | None = None,
    *,
    commands: Sequence[Command[SettingsT]] = (),
    description: str | None = None,
) -> tuple[Command[SettingsT], argparse.Namespace]:
    """The command ``argv`` names (``serve`` when none) and its parsed arguments.

    ``commands`` adds sub-commands, or replaces ``serve``/``migrate`` of the same name.
    Exits with status 2 and a usage line on a command line it cannot parse.
    """
    known = {c.name: c for c in standard_commands(service, build_runner)}
    known.update({c.name: c for c in commands})
    args = build_parser(service, list(known.values()), description).parse_args(argv)
    return known[args.command or "serve"], args


def run_service(
    service: str,
    settings_type: type[SettingsT],
    build_runner: Callable[[SettingsT], ServiceRunner],
    argv: Sequence[str] | None = None,
    *,
    commands: Sequence[Command[SettingsT]] = (),
    description: str | None = None,
) -> int:
    """Run the command of ``python -m services.<service>`` that ``argv`` names; the exit
    status (0, or 1 after an :class:`~kit.errors.AppError`). See :func:`parse_command`."""
    command, args = parse_command(
        service, build_runner, argv, commands=commands, description=description
    )
    settings = load_settings(settings_type, env_file=args.env_file)
    if command.logs:
        configure_logging(service, settings.log_level)
    provider = (
        configure_tracing(service, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio)
        if command.traced
        else None
    )
    try:
        result = command.run(settings, args)
        if result is not None:
            asyncio.run(result)
    except AppError as exc:
        logger.error("command failed", extra={"command": command.name, "reason": exc.reason})
        print(f"{service} {command.name} failed: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if provider is not None:
            provider.shutdown()
    return 0
