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

**Stale copies while Redis is unreachable** (``stale_for`` > 0). Emptying the cache when the
feed is lost is right while Redis answers (callers ask it), and wrong when Redis is gone:
every reader then falls through to a dead or overloaded backend. So a cache built with
``stale_for`` keeps its entries when the feed is lost (fills in flight are still voided),
and while the feed is not fresh **and** the client's :class:`kit.redisx.RedisHealth` says
Redis is not up, :meth:`InvalidatedCache.get` answers an entry that was valid when the feed
last vouched for the cache (:attr:`InvalidationFeed.vouched_at`), for at most ``stale_for``
seconds after that instant. While Redis is up, a cache whose feed is not fresh misses as
before; once the feed is subscribed again every entry is dropped (messages may have been
missed), so no reader sees a value older than ``stale_for`` after an outage, nor any stale
one after recovery. (A subscribed connection that survives a short freeze simply resumes:
a frozen Redis applied no change meanwhile, and the pongs that make the cache fresh again
come after every message published before them.) The feed also tells the health when its
pings go unanswered (before the cache stops being fresh), so a frozen Redis is known hung
before any reader waits on it (unless another connection of the client got an answer since
the oldest unanswered ping was sent: then Redis is slow, not frozen, and the feed only
starts over on a new connection).

Metrics: ``webook_cache_invalidation_feed_up{feed}`` (1 while the cache may be used),
``webook_cache_invalidation_feed_resets_total{feed}`` (caches emptied because the
subscription was lost or re-established), ``webook_cache_stale_serves_total{cache}``
(answers given from a stale copy) and ``webook_cache_serving_stale{cache}`` (1 while stale
copies may be answered).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kit.cache.metrics import (
    CACHE_SERVING_STALE,
    CACHE_STALE_SERVES,
    INVALIDATION_FEED_RESETS,
    INVALIDATION_FEED_UP,
)
from kit.redisx import RedisState, RedisUnavailable, redis_health

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_PING_INTERVAL: Final = 0.25
DEFAULT_MAX_LAG: Final = 1.0
DEFAULT_STALE_FOR: Final = 300.0
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
        on_lost: called instead of ``on_reset`` when the subscription is lost (the cache
            may keep its entries as stale copies: :meth:`InvalidatedCache.lost`); the
            subscription confirmed again calls ``on_reset``.
        ping_interval: seconds between pings on the subscribed connection.
        max_lag: the cache may be used only while the latest answered ping was sent at most
            this many seconds ago.
        clock: monotonic seconds (tests).

    The client's :class:`kit.redisx.RedisHealth` (when made by :func:`kit.redisx.create_redis`)
    is told Redis hangs once the latest answered ping is older than halfway between
    ``ping_interval`` and ``max_lag``: before the cache stops being fresh.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        *,
        name: str,
        on_message: Callable[[bytes], None],
        on_reset: Callable[[], None],
        on_lost: Callable[[], None] | None = None,
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
        self._on_lost = on_lost or on_reset
        self._ping_interval = ping_interval
        self._max_lag = max_lag
        self._hang_after = (ping_interval + max_lag) / 2
        self._clock = clock
        self._health = redis_health(redis)
        # Send time of the latest ping answered on a confirmed subscription; None: down.
        self._confirmed_at: float | None = None
        # The same, kept when the subscription is lost: what stale copies are measured from.
        self._vouched_at: float | None = None
        # Send times of the pings not yet answered on the current subscription, oldest first.
        self._pings: collections.deque[float] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._up_gauge = INVALIDATION_FEED_UP.labels(name)
        self._up_gauge.set(0)

    @property
    def fresh(self) -> bool:
        """Whether every invalidation published more than ``max_lag`` s ago was applied."""
        confirmed = self._confirmed_at
        return confirmed is not None and self._clock() - confirmed <= self._max_lag

    @property
    def vouched_at(self) -> float | None:
        """Until when (monotonic seconds) every announced change is known applied: the send
        time of the latest answered ping, kept after the subscription is lost; None before
        the first confirmation and after :meth:`aclose`."""
        return self._vouched_at

    @property
    def backend_down(self) -> bool:
        """Whether the client's health says Redis is not up (False without a health)."""
        health = self._health
        return health is not None and not health.available

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
        self._vouched_at = None
        self._on_reset()

    def _down(self) -> None:
        was_up = self._confirmed_at is not None
        self._confirmed_at = None
        self._up_gauge.set(0)
        if was_up:
            INVALIDATION_FEED_RESETS.labels(self._name).inc()
        self._on_lost()

    def _confirm(self, at: float) -> None:
        self._confirmed_at = at
        self._vouched_at = at

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
                if isinstance(exc, RedisUnavailable):
                    # Refused at once until the health's probe answers: trying again costs
                    # nothing, and a short delay re-subscribes soon after Redis is back.
                    await asyncio.sleep(self._ping_interval)
                    continue
                await asyncio.sleep(_RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)])
                failures += 1

    async def _subscribed(self) -> None:
        """Subscribe, then read messages and ping until something fails (raises) or stop."""
        pubsub = self._redis.pubsub()
        self._pings.clear()
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
                    self._pings.append(now)
                    next_ping = now + self._ping_interval
                wait = next_ping - now
                confirmed = self._confirmed_at
                if confirmed is not None and now < confirmed + self._hang_after:
                    # Wake up when the pings would count as unanswered, not up to a ping
                    # interval later: the health must know before the cache goes stale.
                    wait = min(wait, confirmed + self._hang_after - now)
                message = await pubsub.get_message(timeout=max(wait, 0.001))
                if message is not None:
                    self._handle(message, subscribe_sent)
                elif confirmed is not None and self._clock() - confirmed > self._hang_after:
                    self._hung()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped

    def _hung(self) -> None:
        """Nothing arrived and the pings are overdue: Redis hangs, unless another connection
        of the client got an answer since the oldest unanswered ping was sent."""
        health = self._health
        # (Down: connections are refused, which the feed's own errors already tell.)
        if health is None or health.state is RedisState.DOWN:
            return
        was_available = health.available
        unanswered = self._pings[0] if self._pings else self._confirmed_at
        since = None
        if unanswered is not None:  # on the health's clock
            since = health.clock() - (self._clock() - unanswered)
        health.timed_out(f"invalidation feed {self._name}: pings unanswered", since=since)
        if was_available and not health.available:
            logger.warning(
                "invalidation feed pings unanswered; Redis taken as hung",
                extra={"feed": self._name},
            )

    def _handle(self, message: dict[str, Any], subscribe_sent: float) -> None:
        kind = message["type"]
        if kind == "message":
            self._on_message(message["data"])
        elif kind == "pong":
            sent = float(message["data"])
            while self._pings and self._pings[0] <= sent:
                self._pings.popleft()
            if self._confirmed_at is not None:
                self._confirm(max(self._confirmed_at, sent))
        elif kind == "subscribe":
            if self._confirmed_at is not None:
                # redis-py subscribed again on a new connection by itself: messages may have
                # been missed in between, so empty the cache. Only messages published after
                # now are known to arrive.
                self._down()
                self._on_reset()
                self._confirm(self._clock())
            else:
                # Every message published after SUBSCRIBE was sent will arrive; what the
                # cache kept from before (stale copies) may have missed some: dropped.
                self._on_reset()
                self._confirm(subscribe_sent)
            self._up_gauge.set(1)
            logger.info("invalidation feed subscribed", extra={"feed": self._name})
        else:
            raise ValueError(f"unexpected pub/sub message {kind!r} on {self.channel}")


class FeedState(Protocol):
    """What an :class:`InvalidatedCache` reads of its feed (:class:`InvalidationFeed`)."""

    @property
    def fresh(self) -> bool:
        """Whether the cache may answer as exact."""

    @property
    def vouched_at(self) -> float | None:
        """Until when every announced change is known applied."""

    @property
    def backend_down(self) -> bool:
        """Whether Redis is known not to be up."""


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
        stale_for: seconds after the feed last vouched for the cache during which an entry
            valid then is still answered while Redis is not up (0: never; see the module).
        name: the ``cache`` label of the stale metrics (needed when ``stale_for`` > 0).
        clock: monotonic seconds (tests).

    Wire it to an :class:`InvalidationFeed` (``on_message`` → :meth:`invalidate`,
    ``on_reset`` → :meth:`clear`, ``on_lost`` → :meth:`lost`), then :meth:`attach` the feed.
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_age: float = 3600.0,
        stale_for: float = 0.0,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age <= 0 or stale_for < 0:
            raise ValueError("max_entries must be >= 1, max_age > 0 and stale_for >= 0")
        if stale_for and not name:
            raise ValueError("a cache serving stale copies needs a name for its metrics")
        self._entries: dict[K, _Entry[V]] = {}
        self._max_entries = max_entries
        self._max_age = max_age
        self._stale_for = stale_for
        self._clock = clock
        self._epoch = 0
        self._feed: FeedState | None = None
        self._stale_serves = CACHE_STALE_SERVES.labels(name) if stale_for else None
        if stale_for:
            this = weakref.ref(self)
            CACHE_SERVING_STALE.labels(name).set_function(
                lambda: float((cache := this()) is not None and cache.serving_stale)
            )

    def attach(self, feed: FeedState) -> None:
        """Use ``feed``'s health: without a fresh feed every lookup misses (or is stale)."""
        self._feed = feed

    @property
    def usable(self) -> bool:
        """Whether lookups may answer from memory now as exact."""
        return self._feed is not None and self._feed.fresh

    @property
    def serving_stale(self) -> bool:
        """Whether lookups may now answer stale copies (feed lost, Redis not up, within
        ``stale_for`` of the feed's last word)."""
        feed = self._feed
        if not self._stale_for or feed is None or feed.fresh or not feed.backend_down:
            return False
        vouched = feed.vouched_at
        return vouched is not None and self._clock() - vouched <= self._stale_for

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The cached value, or None (absent, expired, or the feed is not fresh and no
        stale copy may be answered)."""
        feed = self._feed
        if feed is None:
            return None
        if not feed.fresh:
            return self._stale(key, feed)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry.value

    def _stale(self, key: K, feed: FeedState) -> V | None:
        if self._stale_serves is None or not feed.backend_down:
            return None
        entry = self._entries.get(key)
        vouched = feed.vouched_at
        if entry is None or vouched is None:
            return None
        # Valid when the feed last vouched for the cache, and not older than allowed since.
        if entry.expires <= vouched or self._clock() - vouched > self._stale_for:
            return None
        self._stale_serves.inc()
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

    def lost(self) -> None:
        """The feed was lost: void every ticket taken before; keep the entries (stale
        copies) if ``stale_for`` allows them, else drop them."""
        if not self._stale_for:
            self.clear()
            return
        self._epoch += 1

    def clear(self) -> None:
        """Drop everything and void every ticket taken before."""
        self._epoch += 1
        self._entries.clear()


class LocalTier:
    """In-process caches kept in step by one :class:`InvalidationFeed`: the lifecycle every
    local tier shares.

    A subclass builds its :class:`InvalidatedCache` objects and their feed, then calls
    ``super().__init__(feed, primary, *others)``, which attaches the feed to each. The
    owner calls :meth:`start` inside the running loop and :meth:`aclose` at shutdown.
    """

    def __init__(
        self,
        feed: InvalidationFeed,
        primary: InvalidatedCache[Any, Any],
        *others: InvalidatedCache[Any, Any],
    ) -> None:
        self.feed = feed
        self._primary = primary
        for cache in (primary, *others):
            cache.attach(feed)

    def start(self) -> None:
        """Subscribe to announcements (until then every lookup goes to Redis)."""
        self.feed.start()

    async def aclose(self) -> None:
        """Unsubscribe; lookups go to Redis from now on."""
        await self.feed.aclose()

    stop = aclose
    """The runner's component protocol: ``runner.start_before_serving(tier)``."""

    @property
    def serving_stale(self) -> bool:
        """Whether lookups may now be answered from stale copies (Redis unreachable)."""
        return self._primary.serving_stale
