"""``webookctl search reindex``: rebuild the search index, where the index is.

The index is a directory of files one process may write (tantivy), held by the running
search replica: it cannot be rebuilt over the network. The rebuild that exists is the
search service's own offline command, ``python -m services.search reindex``; this
sub-command runs it, in this machine's environment, and reports its counts. So run
``webookctl search reindex`` where a replica's data directory is, with that replica's
settings (its ``WEBOOK_SEARCH_*`` variables, or ``--env-file``), and with the replica
stopped: while it runs the rebuild refuses at once, saying the index is in use. Events
published meanwhile wait in Kafka and are applied when the replica starts again. On
Kubernetes that is a Job mounting the stopped replica's volume with the search
Deployment's environment; a replica started on an empty volume rebuilds itself instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Final

from webookctl.command import Context, command_group, leaf
from webookctl.errors import CommandFailed
from webookctl.output import Outcome

REINDEX_MODULE: Final = "services.search"


def reindex_argv(env_file: str | None) -> list[str]:
    """The command line of the search service's offline rebuild."""
    argv = [sys.executable, "-m", REINDEX_MODULE, "reindex"]
    if env_file:
        argv += ["--env-file", env_file]
    return argv


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


async def reindex(context: Context, args: argparse.Namespace) -> Outcome:
    """``search reindex [--env-file FILE]``."""
    process = await asyncio.create_subprocess_exec(
        *reindex_argv(args.env_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        # The command's own last line says why (one line, no traceback, by its contract).
        raise CommandFailed(_last_line(err) or f"reindex exited with {process.returncode}")
    try:
        counts = json.loads(_last_line(out))
    except ValueError as exc:
        raise CommandFailed(f"reindex answered no counts: {_last_line(out)!r}") from exc
    text = "index rebuilt: " + ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))
    return Outcome(counts, text)


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``search reindex``."""
    group = command_group(subcommands, "search", "the search index")
    parser = leaf(
        group,
        "reindex",
        "Rebuild the search index offline from the article and user services.\n\n"
        "Runs `python -m services.search reindex` here: run it where the replica's\n"
        "data directory is, with the replica stopped and its WEBOOK_SEARCH_* settings\n"
        "(or --env-file); a running replica holds the index and the rebuild refuses.",
        reindex,
        common,
    )
    parser.add_argument(
        "--env-file", metavar="FILE", help="the search service's settings file (dotenv)"
    )
