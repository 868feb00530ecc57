"""Running ``webookctl`` in a test: in the test's event loop, or as a real process.

:func:`run` calls :func:`webookctl.__main__.execute` with captured streams, so a command can
talk to servers the test runs in the same loop; :func:`run_process` starts ``python -m
webookctl`` with the given ``WEBOOKCTL_*`` settings and nothing else of the test's
environment of that prefix.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from webookctl.__main__ import execute
from webookctl.settings import ENV_PREFIX

# A loaded two-core machine starts Python and imports grpc slowly; this bounds a hang only.
PROCESS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Result:
    """What a run printed, and its exit status."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON document ``--json`` promises."""
        return json.loads(self.out)


async def run(*argv: str, stdin: str = "") -> Result:
    """``webookctl argv`` in this event loop."""
    out, err = io.StringIO(), io.StringIO()
    status = await execute(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Result(status, out.getvalue(), err.getvalue())


def ctl_env(**settings: str) -> dict[str, str]:
    """The test's environment without its ``WEBOOKCTL_*`` variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({f"{ENV_PREFIX}{name.upper()}": value for name, value in settings.items()})
    return env


async def run_process(*argv: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
    """``python -m webookctl argv`` as a child process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webookctl",
        *argv,
        env=env if env is not None else ctl_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), PROCESS_TIMEOUT_S)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())
