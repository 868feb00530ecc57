"""Entry point of ``webookctl`` (console script) and ``python -m webookctl``.

:func:`build_parser` assembles the sub-command groups; :func:`execute` parses a command line,
reads the settings, runs the command and writes its answer, returning the exit status:

- 0: done; the answer on stdout (``--json``: one JSON document);
- 1: the operation failed: one line on stderr, ``webookctl: <why>``, no traceback;
- 2: usage error: argparse's message (or ours, for what argparse cannot check).

:func:`main` adds what only a real process does: the event loop, and logging as JSON lines on
stderr like every process of the project, at ``WEBOOKCTL_LOG_LEVEL`` (``ERROR`` by default:
the libraries' warnings are written for long-running processes, and a command's outcome is
its own one line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import ValidationError

from kit.errors import AppError
from kit.logging import configure_logging
from webookctl import config, jobs, migrate, search, sessions, sms
from webookctl.command import CONNECTION_FLAGS, Context, connection_options
from webookctl.errors import CommandFailed, UsageError
from webookctl.output import document
from webookctl.settings import CtlSettings

logger = logging.getLogger(__name__)

PROG = "webookctl"
GROUPS = (config, sms, sessions, search, jobs, migrate)
DESCRIPTION = """The operator's command line of webook.

Connection settings come from WEBOOKCTL_* variables (WEBOOKCTL_ENV, WEBOOKCTL_ETCD_ENDPOINTS,
WEBOOKCTL_ETCD_USERNAME/_PASSWORD, WEBOOKCTL_REDIS_URL, WEBOOKCTL_TLS_CERT_FILE/_KEY_FILE/
_CA_FILE, WEBOOKCTL_SMS_TOKEN, ...); a flag wins over its variable. Output is for people;
--json prints one JSON document. Exit status: 0 done, 1 failed, 2 usage error."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then a group, then its command."""
    common = connection_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(title="command groups", metavar="GROUP", required=True)
    for group in GROUPS:
        group.register(subcommands, common)
    return parser


def settings_from(args: argparse.Namespace) -> CtlSettings:
    """The settings: ``WEBOOKCTL_*`` variables, overridden by the flags given."""
    overrides: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in CONNECTION_FLAGS.items()
        if hasattr(args, flag)
    }
    try:
        return CtlSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UsageError(problems) from exc


async def execute(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    logs: bool = False,
) -> int:
    """Run the command ``argv`` names; the exit status (see the module docstring).

    ``logs``: route logging to stderr at the settings' ``log_level`` (a real process; tests
    leave logging to pytest).
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        # argparse writes help and usage errors to sys.stdout/sys.stderr itself.
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse has written the help (status 0) or the usage error (status 2).
        return exc.code if isinstance(exc.code, int) else 2
    try:
        settings = settings_from(args)
        if logs:
            configure_logging(PROG, settings.log_level)
        context = Context(settings, stdin, stderr)
        outcome = await args.handler(context, args)
    except CommandFailed as exc:
        stderr.write(f"{PROG}: {exc.message}\n")
        return exc.exit_status
    except AppError as exc:
        # A kit or gateway error that escaped a command's own translation: still one line.
        logger.warning("command failed", extra={"reason": exc.reason})
        stderr.write(f"{PROG}: {exc.message}\n")
        return 1
    stdout.write((document(outcome.data) if getattr(args, "json", False) else outcome.text) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: the exit status."""
    try:
        return asyncio.run(execute(argv, logs=True))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
