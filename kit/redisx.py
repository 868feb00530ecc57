"""Redis client construction, and what this process knows about its Redis being reachable.

A ``BlockingConnectionPool`` (redis-py's default pool raises "Too many connections" under
load) and short socket timeouts, so that a Redis outage turns into fast errors the caller
can fall back from instead of stalled requests.

A command that fails with a *connection* error is retried once on a fresh connection: after
Redis restarts, every pooled connection is dead, and without the retry the first command
on each would fail although Redis is back. The retry is immediate; redis-py retries a
timeout too, and that retry fails at once (the short-circuit below), so an outage stays
fast. The cost: a command whose connection broke after Redis
executed it but before the answer arrived runs twice; every script of ours either
tolerates that or refuses the repeat (e.g. a second code send within the resend interval).

**A short-circuit for a hung Redis** (:class:`RedisHealth`, one per client). A Redis that
refuses connections fails fast by itself; a *frozen* one (SIGSTOP, a stalled host) accepts
connections into the kernel's backlog and never answers, so every command would wait its
whole socket timeout. The first timeout (a command, a connect, or an invalidation feed
whose pings go unanswered, :mod:`kit.cache.invalidation`) marks the client ``hung``: from
then on every command fails at once with :class:`RedisUnavailable` (a ``ConnectionError``,
so every caller's existing fallback applies) while one background probe sends ``PING`` on a
connection of its own every ``probe_interval`` seconds; its first answer reopens the
client. A refused connection only marks the client ``down`` (commands still try, they fail
fast anyway, and the first connection that succeeds marks it ``up`` again). Callers with
copies of their own (in-process caches, session checks) read :attr:`RedisHealth.available`
to decide whether serving a stale copy beats asking.

Metrics: ``webook_redis_reachable{client}`` (1 while up), ``webook_redis_short_circuit{client}``
(1 while hung), ``webook_redis_short_circuits_total{client}`` (commands refused at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Final

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 0.5
DEFAULT_PROBE_INTERVAL: Final = 0.5

REDIS_REACHABLE = Gauge(
    "webook_redis_reachable",
    "1 while this process's last contact with Redis succeeded, else 0.",
    ["client"],
)
REDIS_SHORT_CIRCUIT = Gauge(
    "webook_redis_short_circuit",
    "1 while Redis is known to hang and commands fail at once until a probe answers.",
    ["client"],
)
REDIS_SHORT_CIRCUITS = Counter(
    "webook_redis_short_circuits_total",
    "Redis commands refused at once because Redis was known to hang.",
    ["client"],
)


class RedisUnavailable(RedisConnectionError):
    """Refused without trying: Redis is known to hang until a probe answers."""


class RedisState(StrEnum):
    """What this process last saw of its Redis."""

    UP = "up"
    DOWN = "down"
    """Connections are refused or reset: commands still try (they fail fast)."""
    HUNG = "hung"
    """Something timed out: commands fail at once until a probe answers."""


class RedisHealth:
    """The reachability of one Redis as this process sees it, with a probe while it is not.

    Args:
        name: the ``client`` label of the metrics and logs.
        probe: one ``PING`` on a connection of its own; raises when Redis does not answer.
        probe_interval: seconds between probes while Redis is not up.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[], Awaitable[object]],
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if probe_interval <= 0:
            raise ValueError("probe_interval must be > 0")
        self.name = name
        self._probe = probe
        self._probe_interval = probe_interval
        self._clock = clock
        self._state = RedisState.UP
        self._since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._reachable = REDIS_REACHABLE.labels(name)
        self._short_circuit = REDIS_SHORT_CIRCUIT.labels(name)
        self._short_circuits = REDIS_SHORT_CIRCUITS.labels(name)
        self._reachable.set(1)
        self._short_circuit.set(0)

    @property
    def state(self) -> RedisState:
        """Up, down (refusing) or hung (not answering)."""
        return self._state

    @property
    def available(self) -> bool:
        """Whether the last contact with Redis succeeded."""
        return self._state is RedisState.UP

    @property
    def unavailable_since(self) -> float | None:
        """When (monotonic seconds) Redis stopped being up; None while it is up."""
        return self._since

    def check(self) -> None:
        """Raise :class:`RedisUnavailable` at once while Redis is known to hang."""
        if self._state is RedisState.HUNG:
            self._short_circuits.inc()
            raise RedisUnavailable(f"Redis ({self.name}) is not answering; short-circuited")

    def timed_out(self, reason: str) -> None:
        """Something waited on Redis in vain: short-circuit until a probe answers."""
        if self._state is RedisState.HUNG:
            return
        self._leave_up(reason)
        self._state = RedisState.HUNG
        self._short_circuit.set(1)

    def refused(self, reason: str) -> None:
        """A connection to Redis failed (refused, reset); commands keep trying."""
        if self._state is RedisState.UP:
            self._leave_up(reason)
            self._state = RedisState.DOWN

    def reached(self) -> None:
        """Redis answered: up again."""
        if self._state is RedisState.UP:
            return
        was = self._state
        self._state = RedisState.UP
        self._since = None
        self._reachable.set(1)
        self._short_circuit.set(0)
        logger.info("Redis reachable again", extra={"client": self.name, "was": was.value})

    async def aclose(self) -> None:
        """Stop probing (the client is closing)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _leave_up(self, reason: str) -> None:
        if self._state is RedisState.UP:
            self._since = self._clock()
            self._reachable.set(0)
            logger.warning(
                "Redis unreachable; callers fall back until it answers again",
                extra={"client": self.name, "reason": reason},
            )
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to probe with
                self._task = asyncio.get_running_loop().create_task(
                    self._probe_until_up(),
                    name=f"webook-redis-probe-{self.name}",
                    context=contextvars.Context(),
                )

    async def _probe_until_up(self) -> None:
        while self._state is not RedisState.UP:
            try:
                await self._probe()
            except (RedisError, OSError) as exc:
                logger.debug("Redis probe failed", extra={"client": self.name, "error": repr(exc)})
                await asyncio.sleep(self._probe_interval)
                continue
            self.reached()


class _Reporting(AbstractConnection):
    """Reports timeouts and refused connections to its pool's :class:`RedisHealth`."""

    def __init__(self, *args: Any, health: RedisHealth | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._health = health

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        health = self._health
        if health is None or self.is_connected:
            await super().connect_check_health(check_health, retry_socket_connect)
            return
        health.check()
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except RedisTimeoutError as exc:
            health.timed_out(f"connecting timed out: {exc}")
            raise
        except RedisConnectionError as exc:
            health.refused(f"connecting failed: {exc}")
            raise
        health.reached()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except RedisTimeoutError as exc:
            # Only the socket timeout raises; a read with its own timeout answers None.
            if self._health is not None:
                self._health.timed_out(f"reading timed out: {exc}")
            raise


class _ReportingConnection(_Reporting, Connection):
    pass


class _ReportingSSLConnection(_Reporting, SSLConnection):
    pass


class _ReportingUnixConnection(_Reporting, UnixDomainSocketConnection):
    pass


_REPORTING: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _ReportingConnection,
    SSLConnection: _ReportingSSLConnection,
    UnixDomainSocketConnection: _ReportingUnixConnection,
}


class GuardedConnectionPool(aioredis.BlockingConnectionPool):
    """A blocking pool that refuses at once while its :attr:`health` says Redis hangs.

    Args:
        name: the metrics label of :attr:`health`.
        probe_interval: seconds between probes while Redis is not up.
        kwargs: as :class:`redis.asyncio.BlockingConnectionPool`.
    """

    def __init__(
        self,
        *,
        name: str = "redis",
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        **kwargs: Any,
    ) -> None:
        base = kwargs.pop("connection_class", Connection)
        super().__init__(connection_class=_REPORTING.get(base, base), **kwargs)
        self.health = RedisHealth(name, probe=self._probe, probe_interval=probe_interval)
        self.connection_kwargs["health"] = self.health

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connection, or :class:`RedisUnavailable` at once while Redis hangs."""
        self.health.check()
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Disconnect (see redis-py) and stop probing."""
        await self.health.aclose()
        await super().disconnect(inuse_connections)

    async def _probe(self) -> None:
        conn = self.connection_class(**{**self.connection_kwargs, "health": None})
        try:
            await conn.connect()  # type: ignore[no-untyped-call]  # redis-py: untyped
            await conn.send_command("PING", check_health=False)
            await conn.read_response()
        finally:
            await conn.disconnect()


def create_redis(
    url: str,
    *,
    max_connections: int = 64,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "redis",
    probe_interval: float = DEFAULT_PROBE_INTERVAL,
) -> aioredis.Redis:
    """A Redis client for ``url`` with a bounded, blocking pool and a short-circuit.

    ``name`` labels its health metrics; ``probe_interval`` is the seconds between probes
    while Redis is not up (see the module docstring).
    """
    pool = GuardedConnectionPool.from_url(
        url,
        name=name,
        probe_interval=probe_interval,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), retries=1),
        retry_on_error=[RedisConnectionError],
    )
    return aioredis.Redis(connection_pool=pool)


def redis_health(redis: aioredis.Redis) -> RedisHealth | None:
    """The health of a client made by :func:`create_redis` (None for any other client)."""
    pool = redis.connection_pool
    return pool.health if isinstance(pool, GuardedConnectionPool) else None
