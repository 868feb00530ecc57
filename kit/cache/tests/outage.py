"""Helpers of the Redis outage tests: a Redis of the test's own, frozen or stopped.

The session's Redis is shared by every test of the run, so a test that freezes Redis
(SIGSTOP: the process stops answering while the kernel still accepts connections, like a
stalled host) or stops it starts its own on a free port. :func:`frozen` always sends
SIGCONT on the way out, whatever happened inside. :func:`client_of` is a client whose socket
timeout is far longer than any answer may take once Redis is known down, and
:func:`fed` a local tier subscribed to its invalidation feed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis

from devstack.infra import ManagedProcess, free_port, redis_process
from kit.cache.invalidation import LocalTier
from kit.redisx import create_redis

TierT = TypeVar("TierT", bound=LocalTier)

DEADLINE_S = 20.0
"""How long a condition may take to come true on a loaded machine before a test fails."""

SOCKET_TIMEOUT_S = 3.0
"""The clients' socket timeout: a call that waited on a frozen Redis instead of being
answered from what is known would take at least this long."""


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


@asynccontextmanager
async def client_of(proc: ManagedProcess, name: str) -> AsyncIterator[aioredis.Redis]:
    """A client of ``proc`` with :data:`SOCKET_TIMEOUT_S`, closed with its pool on exit."""
    client = create_redis(url_of(proc), timeout=SOCKET_TIMEOUT_S, name=name)
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


@asynccontextmanager
async def fed(tier: TierT) -> AsyncIterator[TierT]:
    """``tier`` started and its feed subscribed; closed on exit."""
    tier.start()
    try:
        await eventually(lambda: tier.feed.fresh, "the feed subscribes")
        yield tier
    finally:
        await tier.aclose()
