"""Helpers of the Redis outage tests: a Redis of the test's own, frozen or stopped.

The session's Redis is shared by every test of the run, so a test that freezes Redis
(SIGSTOP: the process stops answering while the kernel still accepts connections, like a
stalled host) or stops it starts its own on a free port. :func:`frozen` always sends
SIGCONT on the way out, whatever happened inside.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.infra import ManagedProcess, free_port, redis_process

DEADLINE_S = 20.0
"""How long a condition may take to come true on a loaded machine before a test fails."""


@contextmanager
def own_redis(log_dir: Path) -> Iterator[ManagedProcess]:
    """A redis-server of the caller's own on a free port, stopped (and thawed) on exit."""
    proc = redis_process(free_port(), log_dir)
    proc.start()
    try:
        yield proc
    finally:
        proc.signal(signal.SIGCONT)
        proc.stop()


def url_of(proc: ManagedProcess) -> str:
    """The ``redis://`` URL of a process made by :func:`own_redis`."""
    return f"redis://127.0.0.1:{proc.argv[proc.argv.index('--port') + 1]}/0"


@contextmanager
def frozen(proc: ManagedProcess) -> Iterator[None]:
    """SIGSTOP the process for the block; SIGCONT after it, whatever happens."""
    proc.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.signal(signal.SIGCONT)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = DEADLINE_S
) -> None:
    """Poll ``condition`` (sync or async) until true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {seconds} s")
        await asyncio.sleep(0.02)
