"""The one error a command raises on purpose: :class:`CommandFailed`.

A command wraps what goes wrong at its boundary (etcd, Redis or a gRPC call failing, a value
refused by the settings schema) in a :class:`CommandFailed` with a message fit for one line
on stderr, ``raise CommandFailed(...) from exc``; :func:`webookctl.__main__.execute` turns it
into exit status 1. A :class:`UsageError` (status 2) is a command line that cannot be
carried out as written, found after argparse accepted it (no environment named, say).

::

    CommandFailed       exit 1
    └── UsageError      exit 2
"""

from __future__ import annotations


class CommandFailed(Exception):
    """The operation did not happen (or not completely); ``message`` says why, on one line."""

    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())


class UsageError(CommandFailed):
    """The command line is incomplete or contradictory in a way argparse cannot see."""

    exit_status = 2
