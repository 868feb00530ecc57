"""In-process caches kept exact across processes by Redis pub/sub invalidation.

A value read from Redis (or computed from it) can be kept in process memory, saving a round
trip per use, if every process learns at once when it changes. The writer changes Redis and
publishes the key on a channel **in one MULTI/EXEC transaction** (:func:`publish_invalidation`),
so a change is never recorded without its announcement; every process runs an
:class:`InvalidationFeed` subscribed to that channel, and drops the key from its
:class:`InvalidatedCache` when the message arrives.

What makes it safe, and the one window that remains:

- **Delivery delay.** A process serves its cached copy until the message arrives: normally
  well under a millisecond on a LAN after the writer's transaction.
- **Lost messages.** Redis delivers pub/sub at most once; a message is lost only with the
  subscriber's connection. Any sign of that (an error, a reconnect, a new ``subscribe``
  confirmation) empties the cache, and it stays unused (every lookup misses, so callers ask
  Redis) until the subscription is confirmed again.
- **A silently stalled connection.** The feed pings Redis on the subscribed connection every
  ``ping_interval`` seconds, each ping carrying its send time. Redis answers a ping after
  every message published before it, in order, so when the answer to a ping sent at *t*
  arrives, every change announced before *t* has been applied here. The cache is used only
  while such a *t* is at most ``max_lag`` seconds old: that bounds staleness even if
  messages stop arriving without an error.
- **Races with fills.** A lookup that misses takes a :meth:`InvalidatedCache.ticket` before
  it reads Redis, and its :meth:`~InvalidatedCache.put` is dropped if any invalidation (or
  reset) happened meanwhile: a value read just before a change can never be cached after
  the change's message was processed.

Metrics: ``webook_cache_invalidation_feed_up{feed}`` (1 while the cache may be used) and
``webook_cache_invalidation_feed_resets_total{feed}`` (caches emptied because the
subscription was lost or re-established).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kit.cache.metrics import INVALIDATION_FEED_RESETS, INVALIDATION_FEED_UP

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_PING_INTERVAL: Final = 0.25
DEFAULT_MAX_LAG: Final = 1.0
_RETRY_DELAYS: Final = (0.1, 0.25, 0.5, 1.0, 2.0)


async def publish_invalidation(
    redis: aioredis.Redis, channel: str, member: str, *commands: tuple[object, ...]
) -> list[Any]:
    """Run ``commands`` (``("SET", key, value, "EX", ttl)``, ...) and announce ``member``.

    One MULTI/EXEC transaction: either Redis applied the change and queued the message for
    every subscriber, or neither happened. Returns the commands' replies (the publish's
    last). Raises what redis-py raises on failure.
    """
    async with redis.pipeline(transaction=True) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        pipe.publish(channel, member)
        replies: list[Any] = await pipe.execute()
    return replies


class InvalidationFeed:
    """A subscription to one invalidation channel, with its health.

    Args:
        redis: the client; a dedicated connection is taken from its pool while subscribed.
        channel: the channel writers publish changed keys on.
        name: the ``feed`` label of the metrics.
        on_message: called with each published member (bytes), on the event loop.
        on_reset: called when messages may have been missed (the cache must be emptied).
        ping_interval: seconds between pings on the subscribed connection.
        max_lag: the cache may be used only while the latest answered ping was sent at most
            this many seconds ago.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        *,
        name: str,
        on_message: Callable[[bytes], None],
        on_reset: Callable[[], None],
        ping_interval: float = DEFAULT_PING_INTERVAL,
        max_lag: float = DEFAULT_MAX_LAG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ping_interval <= 0 or max_lag <= ping_interval:
            raise ValueError("ping_interval must be > 0 and max_lag > ping_interval")
        self._redis = redis
        self.channel = channel
        self._name = name
        self._on_message = on_message
        self._on_reset = on_reset
        self._ping_interval = ping_interval
        self._max_lag = max_lag
        self._clock = clock
        # Send time of the latest ping answered on a confirmed subscription; None: down.
        self._confirmed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._up_gauge = INVALIDATION_FEED_UP.labels(name)
        self._up_gauge.set(0)

    @property
    def fresh(self) -> bool:
        """Whether every invalidation published more than ``max_lag`` s ago was applied."""
        confirmed = self._confirmed_at
        return confirmed is not None and self._clock() - confirmed <= self._max_lag

    def start(self) -> None:
        """Subscribe in the background (the running loop); no-op if already started."""
        if self._task is None:
            self._stopping = False
            # A fresh context: the caller's contextvars (trace, request) are not the feed's.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"webook-invalidation-{self._name}", context=contextvars.Context()
            )

    async def aclose(self) -> None:
        """Unsubscribe and stop; the cache is unused from now on."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            # A cancellation that lands as redis-py's read times out can be swallowed (the
            # read's timeout turns it into a plain timeout on Python 3.11): cancel until the
            # task is done, and the loop also checks the flag.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError, ValueError):
                task.result()
        self._down()

    def _down(self) -> None:
        was_up = self._confirmed_at is not None
        self._confirmed_at = None
        self._up_gauge.set(0)
        if was_up:
            INVALIDATION_FEED_RESETS.labels(self._name).inc()
        self._on_reset()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._subscribed()
            except (RedisError, OSError, ValueError) as exc:
                if self._confirmed_at is not None:
                    failures = 0
                if failures == 0:
                    logger.warning(
                        "invalidation feed lost; the cache is bypassed until it is back",
                        extra={"feed": self._name, "error": repr(exc)},
                    )
                self._down()
                await asyncio.sleep(_RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)])
                failures += 1

    async def _subscribed(self) -> None:
        """Subscribe, then read messages and ping until something fails (raises) or stop."""
        pubsub = self._redis.pubsub()
        try:
            subscribe_sent = self._clock()
            await pubsub.subscribe(self.channel)
            next_ping = subscribe_sent + self._ping_interval
            while not self._stopping:
                now = self._clock()
                if now >= next_ping:
                    if self._confirmed_at is not None and not self.fresh:
                        # Pings go unanswered: doubt. Start over on a new connection.
                        raise RedisTimeoutError("invalidation feed pings unanswered")
                    await pubsub.ping(repr(now))
                    next_ping = now + self._ping_interval
                message = await pubsub.get_message(timeout=self._ping_interval)
                if message is not None:
                    self._handle(message, subscribe_sent)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped

    def _handle(self, message: dict[str, Any], subscribe_sent: float) -> None:
        kind = message["type"]
        if kind == "message":
            self._on_message(message["data"])
        elif kind == "pong":
            if self._confirmed_at is not None:
                self._confirmed_at = max(self._confirmed_at, float(message["data"]))
        elif kind == "subscribe":
            if self._confirmed_at is not None:
                # redis-py subscribed again on a new connection by itself: messages may have
                # been missed in between, so empty the cache. Only messages published after
                # now are known to arrive.
                self._down()
                self._confirmed_at = self._clock()
            else:
                # Every message published after SUBSCRIBE was sent will arrive.
                self._on_reset()
                self._confirmed_at = subscribe_sent
            self._up_gauge.set(1)
            logger.info("invalidation feed subscribed", extra={"feed": self._name})
        else:
            raise ValueError(f"unexpected pub/sub message {kind!r} on {self.channel}")


class _Entry(Generic[V]):
    __slots__ = ("expires", "value")

    def __init__(self, value: V, expires: float) -> None:
        self.value = value
        self.expires = expires


class InvalidatedCache(Generic[K, V]):
    """A bounded in-process map whose entries are usable only while its feed is fresh.

    Args:
        max_entries: beyond this many entries, the oldest is dropped.
        max_age: seconds an entry lives at most (a safety net; invalidation is the rule).
        clock: monotonic seconds (tests).

    Wire it to an :class:`InvalidationFeed` with :meth:`feed_callbacks`, then :meth:`attach`
    the feed.
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age <= 0:
            raise ValueError("max_entries must be >= 1 and max_age > 0")
        self._entries: dict[K, _Entry[V]] = {}
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._epoch = 0
        self._feed: InvalidationFeed | None = None

    def attach(self, feed: InvalidationFeed) -> None:
        """Use ``feed``'s health: without a fresh feed every lookup misses."""
        self._feed = feed

    @property
    def usable(self) -> bool:
        """Whether lookups may answer from memory now."""
        return self._feed is not None and self._feed.fresh

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The cached value, or None (absent, expired, or the feed is not fresh)."""
        if not self.usable:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry.value

    def ticket(self) -> int:
        """Take before reading the source of a value; give to :meth:`put`."""
        return self._epoch

    def put(self, key: K, value: V, ticket: int) -> bool:
        """Cache ``value`` unless an invalidation happened since ``ticket``; True if cached."""
        if ticket != self._epoch or not self.usable:
            return False
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self._max_entries:
            del entries[next(iter(entries))]
        entries[key] = _Entry(value, self._clock() + self._max_age)
        return True

    def invalidate(self, key: K) -> None:
        """Drop ``key`` and void every ticket taken before."""
        self._epoch += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Drop everything and void every ticket taken before."""
        self._epoch += 1
        self._entries.clear()
