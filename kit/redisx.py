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
whole socket timeout. A timeout (a command, a connect, or an invalidation feed whose pings
go unanswered, :mod:`kit.cache.invalidation`) marks the client ``hung`` **if no answer
arrived on any of its connections since the timed-out command was sent**: a Redis that is
slow under load keeps answering others, and is not taken for a frozen one. From then on
every command fails at once with :class:`RedisUnavailable` (a ``ConnectionError``, so every
caller's existing fallback applies) while one background probe sends ``PING`` on a
connection of its own every ``probe_interval`` seconds; its first answer (or any answer on
any connection) reopens the client. A refused connection only marks the client ``down``
(commands still try, they fail fast anyway, and the first connection that succeeds marks it
``up`` again). Callers with copies of their own (in-process caches, session checks) read
:attr:`RedisHealth.available` to decide whether serving a stale copy beats asking.

**Reads with a fallback wait milliseconds, not a socket timeout** (:func:`fallback_reads`).
A command in flight when Redis froze would still wait its whole timeout. A read that can do
without Redis (a cache lookup that goes to SQL or serves a stale copy, a session check that
can go fail-static, a rate-limit check with a policy) is awaited through
:meth:`RedisHealth.read`: once Redis has answered nothing on any connection for
``fallback_wait`` seconds (default a tenth of the timeout: 50 ms) while such a read waits,
every such read pending is abandoned (:class:`ReadAbandoned`, a ``TimeoutError``) and the
client is taken as hung *for reads with a fallback*: they are refused at once, and the probe
starts. Other commands (writes, code sends) still try with their full timeout, and the
first of them, or the probe, that times out with no answer anywhere confirms the hang for
every command. While Redis answers anything, a read with a fallback waits for its own answer
as long as any command would. The bound costs no task and no timer per read (one watch per
client runs while such reads are pending); in-memory hits never get here.

Metrics: ``webook_redis_reachable{client}`` (1 while up), ``webook_redis_short_circuit{client}``
(1 while hung), ``webook_redis_short_circuits_total{client}`` (commands refused at once),
``webook_redis_read_fallbacks_total{client,reason}`` (reads with a fallback that took it:
``waited`` the bound in silence, or ``refused`` at once while hung).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Final, Protocol, TypeVar

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
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 0.5
DEFAULT_PROBE_INTERVAL: Final = 0.5
# A read with a fallback waits this share of the socket timeout for Redis to say anything.
FALLBACK_WAIT_SHARE: Final = 0.1

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
REDIS_READ_FALLBACKS = Counter(
    "webook_redis_read_fallbacks_total",
    "Redis reads with a fallback that took it: waited the bound with no answer from Redis, "
    "or refused at once while Redis hung.",
    ["client", "reason"],
)


class RedisUnavailable(RedisConnectionError):
    """Refused without trying: Redis is known to hang until a probe answers."""


class ReadAbandoned(RedisTimeoutError):
    """A read with a fallback stopped waiting: Redis answered nothing for the bound."""


class RedisState(StrEnum):
    """What this process last saw of its Redis."""

    UP = "up"
    DOWN = "down"
    """Connections are refused or reset: commands still try (they fail fast)."""
    HUNG = "hung"
    """Redis answers nothing: reads with a fallback fail at once, and every command does
    once a timeout confirmed it, until Redis answers again."""


class _Read:
    """A read with a fallback in flight (:meth:`RedisHealth.read`)."""

    __slots__ = ("abandoned", "cancelling", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.abandoned = False


class RedisHealth:
    """The reachability of one Redis as this process sees it, with a probe while it is not.

    Args:
        name: the ``client`` label of the metrics and logs.
        probe: one ``PING`` on a connection of its own; raises when Redis does not answer.
        probe_interval: seconds between probes while Redis is not up.
        fallback_wait: seconds a read with a fallback waits without any answer from Redis
            before it is abandoned (:meth:`read`).
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[], Awaitable[object]],
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        fallback_wait: float = DEFAULT_TIMEOUT * FALLBACK_WAIT_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if probe_interval <= 0 or fallback_wait <= 0:
            raise ValueError("probe_interval and fallback_wait must be > 0")
        self.name = name
        self.fallback_wait = fallback_wait
        self.clock = clock
        self._probe = probe
        self._probe_interval = probe_interval
        self._state = RedisState.UP
        # Hung for every command (a timeout confirmed it), not only for reads with a fallback.
        self._confirmed = False
        self._since: float | None = None
        self._last_answer = -math.inf
        # Replies awaited on every connection, and since when none has come (None: none
        # awaited): what tells a silent Redis from a slow one.
        self._awaited = 0
        self._awaited_since: float | None = None
        self._reads: set[_Read] = set()
        # The loop the watch over pending reads runs on (None: not running).
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._reachable = REDIS_REACHABLE.labels(name)
        self._short_circuit = REDIS_SHORT_CIRCUIT.labels(name)
        self._short_circuits = REDIS_SHORT_CIRCUITS.labels(name)
        self._waited = REDIS_READ_FALLBACKS.labels(name, "waited")
        self._refused = REDIS_READ_FALLBACKS.labels(name, "refused")
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
        """Raise :class:`RedisUnavailable` at once while a timeout confirmed Redis hangs."""
        if self._confirmed:
            self._short_circuits.inc()
            raise RedisUnavailable(f"Redis ({self.name}) is not answering; short-circuited")

    async def read(self, call: Awaitable[T]) -> T:
        """``await call``, a Redis read that has a fallback, for no longer than Redis stays
        silent: raises :class:`ReadAbandoned` once no connection got an answer for
        ``fallback_wait`` seconds while it waited, and :class:`RedisUnavailable` at once
        (without awaiting ``call``) while Redis hangs. The caller takes its fallback."""
        if self._state is RedisState.HUNG:
            if inspect.iscoroutine(call):
                call.close()
            self._short_circuits.inc()
            self._refused.inc()
            raise RedisUnavailable(f"Redis ({self.name}) is not answering; read refused")
        task = asyncio.current_task()
        if task is None:
            return await call
        read = _Read(task)
        reads = self._reads
        reads.add(read)
        if self._watch_loop is not (loop := task.get_loop()):
            self._watch_loop = loop
            loop.call_later(self.fallback_wait, self._due)
        try:
            return await call
        except asyncio.CancelledError:
            # Ours, unless someone else cancelled the task too (then theirs goes on).
            if read.abandoned and task.uncancel() <= read.cancelling:
                raise ReadAbandoned(
                    f"Redis ({self.name}) answered nothing for {self.fallback_wait} s"
                ) from None
            raise
        finally:
            reads.discard(read)

    # One watch per client, not a timer per read: it runs every ``fallback_wait`` while
    # reads with a fallback are pending, and stops when none is.

    def _due(self) -> None:
        # Decide after the callbacks already queued: if this loop was late, the answers that
        # arrived meanwhile are read first and count.
        loop = self._watch_loop
        if loop is not None:
            loop.call_soon(self._decide)

    def _decide(self) -> None:
        loop = self._watch_loop
        if loop is None:
            return
        if not self._reads:
            self._watch_loop = None
            return
        # Silent: a reply has been awaited for the whole bound with no answer on any
        # connection meanwhile. Measured from what was sent, not from when a read began, so
        # a read not even sent yet (this process was busy) proves nothing.
        waited_since = self._awaited_since
        if waited_since is not None:
            left = waited_since + self.fallback_wait - self.clock()
            if left <= 0:
                self._silent()
                self._watch_loop = None
                return
        else:
            left = self.fallback_wait
        loop.call_later(left, self._due)

    def _silent(self) -> None:
        """No answer for ``fallback_wait`` while a read waited: hung for reads with a
        fallback, every one pending abandoned."""
        if self._state is not RedisState.HUNG:
            self._leave_up(f"no answer for {self.fallback_wait} s while a read waited")
            self._state = RedisState.HUNG
            self._short_circuit.set(1)
        for read in self._reads:
            if not read.abandoned:
                read.abandoned = True
                self._waited.inc()
                read.task.cancel()

    def awaiting(self) -> None:
        """A connection starts waiting for a reply (end it with :meth:`answered` or
        :meth:`unanswered`)."""
        self._awaited += 1
        if self._awaited_since is None:
            self._awaited_since = self.clock()

    def answered(self) -> None:
        """A reply arrived: Redis is alive (up again if it was not)."""
        now = self._last_answer = self.clock()
        self._awaited -= 1
        # Replies still awaited were sent before this answer: they wait from now on.
        self._awaited_since = now if self._awaited > 0 else None
        if self._state is not RedisState.UP:
            self.reached()

    def answered_unawaited(self) -> None:
        """A message nobody waited for arrived (pub/sub): Redis is alive."""
        now = self._last_answer = self.clock()
        if self._awaited_since is not None:
            self._awaited_since = now
        if self._state is not RedisState.UP:
            self.reached()

    def unanswered(self) -> None:
        """A reply is no longer awaited (the read failed or was given up)."""
        self._awaited -= 1
        if self._awaited <= 0:
            self._awaited = 0
            self._awaited_since = None

    def timed_out(self, reason: str, *, since: float | None = None) -> None:
        """Something waited on Redis in vain since ``since`` (this health's clock; None:
        whatever else happened): short-circuit every command until Redis answers, unless
        some connection got an answer meanwhile (a slow Redis, not a frozen one)."""
        if since is not None and self._last_answer >= since:
            return
        if self._confirmed:
            return
        if self._state is not RedisState.HUNG:
            self._leave_up(reason)
            self._state = RedisState.HUNG
            self._short_circuit.set(1)
        self._confirmed = True
        # Reads still waiting would wait for nothing.
        self._silent()

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
        self._confirmed = False
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
            self._since = self.clock()
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
            sent = self.clock()
            try:
                await self._probe()
            except (RedisError, OSError) as exc:
                logger.debug("Redis probe failed", extra={"client": self.name, "error": repr(exc)})
                if isinstance(exc, RedisTimeoutError):
                    # Hung for reads only so far: a probe that waited its whole timeout in
                    # vain confirms it for every command.
                    self.timed_out(f"probe timed out: {exc}", since=sent)
                await asyncio.sleep(self._probe_interval)
                continue
            self.answered_unawaited()


class FallbackRead(Protocol):
    """How a read with a fallback awaits Redis (:func:`fallback_reads`)."""

    def __call__(self, call: Awaitable[T], /) -> Awaitable[T]:
        """``await call``, bounded as :meth:`RedisHealth.read` says."""
        ...


async def _unbounded(call: Awaitable[T]) -> T:
    return await call


def fallback_reads(redis: object) -> FallbackRead:
    """How reads with a fallback await ``redis``: :meth:`RedisHealth.read` for a client
    made by :func:`create_redis`, a plain ``await`` for any other (fakes in tests).

    Resolve it once (at construction) and wrap only the Redis round trip: ``await
    self._read(self._redis.get(key))``.
    """
    pool = getattr(redis, "connection_pool", None)
    if isinstance(pool, GuardedConnectionPool):
        return pool.health.read
    return _unbounded


class _Reporting(AbstractConnection):
    """Reports answers, timeouts and refused connections to its pool's :class:`RedisHealth`."""

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
        started = health.clock()
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except RedisTimeoutError as exc:
            health.timed_out(f"connecting timed out: {exc}", since=started)
            raise
        except RedisConnectionError as exc:
            health.refused(f"connecting failed: {exc}")
            raise
        health.reached()

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109  # redis-py's signature
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        health = self._health
        if health is None or timeout is not None:
            # Pub/sub waits for messages with a timeout of its own: silence is no sign there,
            # but a message is an answer.
            response = await super().read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
            if health is not None and response is not None:
                health.answered_unawaited()
            return response
        health.awaiting()
        try:
            response = await super().read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        except ResponseError:
            health.answered()  # an error reply is an answer
            raise
        except RedisTimeoutError as exc:
            health.unanswered()
            # Only the socket timeout raises here, so the read began a socket timeout ago.
            since = health.clock() - (self.socket_timeout or 0.0)
            health.timed_out(f"reading timed out: {exc}", since=since)
            raise
        except BaseException:
            health.unanswered()
            raise
        health.answered()
        return response


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
        fallback_wait: see :class:`RedisHealth` (default: a tenth of ``socket_timeout``).
        kwargs: as :class:`redis.asyncio.BlockingConnectionPool`.
    """

    def __init__(
        self,
        *,
        name: str = "redis",
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        fallback_wait: float | None = None,
        **kwargs: Any,
    ) -> None:
        base = kwargs.pop("connection_class", Connection)
        super().__init__(connection_class=_REPORTING.get(base, base), **kwargs)
        if fallback_wait is None:
            timeout = kwargs.get("socket_timeout") or DEFAULT_TIMEOUT
            fallback_wait = float(timeout) * FALLBACK_WAIT_SHARE
        self.health = RedisHealth(
            name, probe=self._probe, probe_interval=probe_interval, fallback_wait=fallback_wait
        )
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
    fallback_wait: float | None = None,
) -> aioredis.Redis:
    """A Redis client for ``url`` with a bounded, blocking pool and a short-circuit.

    ``name`` labels its health metrics; ``probe_interval`` is the seconds between probes
    while Redis is not up; ``fallback_wait`` the seconds a read with a fallback waits for
    a silent Redis (default a tenth of ``timeout``; see the module docstring).
    """
    pool = GuardedConnectionPool.from_url(
        url,
        name=name,
        probe_interval=probe_interval,
        fallback_wait=fallback_wait,
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
