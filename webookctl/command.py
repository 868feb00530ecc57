"""What every sub-command shares: its :class:`Context`, its handler's shape, its options.

Each command module (``config``, ``sms``, ``sessions``, ``search``, ``jobs``, ``migrate``)
has a ``register`` function that adds its group of sub-commands with :func:`leaf`; a leaf's
handler is an ``async`` function of the :class:`Context` and the parsed arguments returning
an :class:`~webookctl.output.Outcome`, or raising :class:`~webookctl.errors.CommandFailed`.

The connection options (:func:`connection_options`) are accepted before the group
(``webookctl --env prod config get gateway``) and after the leaf (``webookctl config get
gateway --env prod``): both parsers declare them with ``SUPPRESS`` defaults, so whichever
place names an option sets it and neither overwrites the other with a default.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

from webookctl.errors import UsageError
from webookctl.output import Outcome
from webookctl.settings import CtlSettings


@dataclass(frozen=True)
class Context:
    """The settings of this run and the terminal a command may ask a question on."""

    settings: CtlSettings
    stdin: TextIO
    stderr: TextIO

    def require_env(self, name: str | None = None) -> str:
        """The environment named (``name``, else ``--env``/``WEBOOKCTL_ENV``); a usage
        error when there is none."""
        chosen = name or self.settings.env
        if not chosen:
            raise UsageError("no environment given: pass --env NAME or set WEBOOKCTL_ENV")
        return chosen

    def confirm(self, question: str) -> bool:
        """Ask ``question`` on stderr and read the answer; only ``y``/``yes`` agrees (end of
        input is a no, so a script that forgot ``--yes`` changes nothing)."""
        self.stderr.write(f"{question} [y/N] ")
        self.stderr.flush()
        answer = self.stdin.readline()
        return answer.strip().lower() in ("y", "yes")


Handler = Callable[[Context, argparse.Namespace], Awaitable[Outcome]]


def operator_name(given: str | None) -> str:
    """Who makes a change: ``--who``, else the operating-system user."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError) as exc:
        raise UsageError("cannot tell who you are: pass --who NAME") from exc


# Flag -> the CtlSettings field it sets.
CONNECTION_FLAGS: dict[str, str] = {
    "env": "env",
    "etcd": "etcd_endpoints",
    "etcd_user": "etcd_username",
    "redis_url": "redis_url",
    "tls_cert": "tls_cert_file",
    "tls_key": "tls_key_file",
    "tls_ca": "tls_ca_file",
    "timeout": "timeout",
}


def connection_options() -> argparse.ArgumentParser:
    """A parent parser of the options every command accepts (see the module docstring)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("output and connection (also WEBOOKCTL_* variables)")
    group.add_argument("--json", action="store_true", help="print one JSON document")
    group.add_argument("--env", metavar="NAME", help="environment of the configuration")
    group.add_argument("--etcd", metavar="HOST:PORT[,...]", help="etcd client endpoints")
    group.add_argument(
        "--etcd-user", metavar="USER", help="etcd user (password: WEBOOKCTL_ETCD_PASSWORD)"
    )
    group.add_argument("--redis-url", metavar="URL", help="the gateway's Redis")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate for gRPC (PEM)")
    group.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    group.add_argument("--tls-ca", metavar="FILE", help="CA certificate to trust (PEM)")
    group.add_argument("--timeout", metavar="SECONDS", type=float, help="gRPC call timeout")
    return common


def leaf(
    group: Any,
    name: str,
    description: str,
    handler: Handler,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    """Add sub-command ``name`` running ``handler`` to ``group`` (a ``_SubParsersAction``)."""
    first_line = description.strip().splitlines()[0]
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=first_line,
        description=description,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def command_group(subcommands: Any, name: str, description: str) -> Any:
    """A group of sub-commands (``config``, ``sms``, ...) under the top-level parser."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=description, description=description
    )
    group = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    return group
