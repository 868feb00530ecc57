"""In-process rate limiters: one state per key in a dict, no I/O, an injectable clock.

Each limiter offers a synchronous :meth:`~LocalLimiter.check` and the :class:`Limiter`
coroutine :meth:`~LocalLimiter.acquire` (which just calls ``check``). The limits hold per
process: N replicas admit N times the quota.

Memory stays bounded: a key's state is dropped once it is equivalent to a fresh one (a full
bucket, a past window) by a sweep that runs at most once per ``sweep_interval`` seconds; and
at ``max_keys`` the oldest key is forgotten (it then starts afresh, which only errs on the
lenient side).

Not thread-safe: meant for one asyncio event loop, where checks never interleave.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Generic, TypeVar

from kit.ratelimit.base import Algorithm, Decision, Quota, check_cost
from kit.ratelimit.token_bucket import Clock, TokenBucket

S = TypeVar("S")

# Float arithmetic loses a few ulps; a request that arrives exactly when promised must not
# be refused for it. Units for the counts, seconds for the leaky bucket's instants (which
# the Redis script keeps in whole microseconds).
_EPSILON = 1e-9
_TIME_EPSILON = 1e-6
DEFAULT_MAX_KEYS = 100_000


class LocalLimiter(ABC, Generic[S]):
    """An in-process :class:`~kit.ratelimit.base.Limiter`: a table of per-key state."""

    def __init__(
        self,
        quota: Quota,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
        sweep_interval: float | None = None,
    ) -> None:
        """Enforce ``quota`` per key.

        Args:
            quota: what each key may use.
            clock: monotonic seconds (``time.monotonic``); inject one to drive tests.
            max_keys: the most keys remembered at once.
            sweep_interval: seconds between sweeps of idle keys (default: the period,
                at least 1 s).
        """
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self.quota = quota
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_interval = max(quota.period, 1.0) if sweep_interval is None else sweep_interval
        self._states: dict[str, S] = {}
        self._next_sweep = clock() + self._sweep_interval

    def __len__(self) -> int:
        """How many keys have state now."""
        return len(self._states)

    def check(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` units for ``key`` if the quota allows (see :class:`Limiter`)."""
        check_cost(cost)
        now = self._clock()
        if now >= self._next_sweep:
            self.sweep(now)
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self._max_keys:
                self._make_room(now)
            state = self._states[key] = self._new_state(now)
        return self._decide(state, now, cost)

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        """:meth:`check`, as the :class:`~kit.ratelimit.base.Limiter` coroutine."""
        return self.check(key, cost)

    def sweep(self, now: float | None = None) -> None:
        """Forget every key whose state is equivalent to a fresh one."""
        now = self._clock() if now is None else now
        idle = [key for key, state in self._states.items() if self._idle(state, now)]
        for key in idle:
            del self._states[key]
        self._next_sweep = now + self._sweep_interval

    def _make_room(self, now: float) -> None:
        self.sweep(now)
        if len(self._states) >= self._max_keys:
            # Dicts keep insertion order: this drops the key created longest ago.
            del self._states[next(iter(self._states))]

    @abstractmethod
    def _new_state(self, now: float) -> S:
        """The state of a key never seen (or forgotten)."""

    @abstractmethod
    def _decide(self, state: S, now: float, cost: int) -> Decision:
        """Admit or refuse ``cost`` units against ``state``, updating it when admitted."""

    @abstractmethod
    def _idle(self, state: S, now: float) -> bool:
        """Whether ``state`` is now equivalent to :meth:`_new_state`."""


class LocalTokenBucket(LocalLimiter[TokenBucket]):
    """A :class:`~kit.ratelimit.TokenBucket` per key: rate ``limit / period``, ``burst``."""

    def _new_state(self, now: float) -> TokenBucket:
        return TokenBucket(self.quota.rate, self.quota.capacity, clock=self._clock)

    def _decide(self, state: TokenBucket, now: float, cost: int) -> Decision:
        if state.try_acquire(cost):
            return Decision(True, int(state.tokens + _EPSILON), 0.0)
        return Decision(False, int(state.tokens + _EPSILON), state.seconds_until_available(cost))

    def _idle(self, state: TokenBucket, now: float) -> bool:
        return state.seconds_until_available(state.capacity) == 0.0


class _Tat:
    """A leaky bucket's theoretical arrival time: when the bucket will be empty."""

    __slots__ = ("tat",)

    def __init__(self, tat: float) -> None:
        self.tat = tat


class LocalLeakyBucket(LocalLimiter[_Tat]):
    """A leaky bucket as a meter (GCRA), draining at ``limit / period``, holding ``burst``.

    The state is one instant per key, the time at which the bucket will have drained; a
    request fits when adding its ``cost`` keeps the level at most ``burst``.
    """

    def _new_state(self, now: float) -> _Tat:
        return _Tat(now)

    def _decide(self, state: _Tat, now: float, cost: int) -> Decision:
        interval = 1.0 / self.quota.rate
        capacity = self.quota.capacity
        tat = max(state.tat, now) + cost * interval
        # Seconds of backlog once this request is in the bucket, against what it can hold.
        excess = (tat - now) - capacity * interval
        if excess <= _TIME_EPSILON:
            state.tat = tat
            return Decision(True, int((_TIME_EPSILON - excess) / interval), 0.0)
        level = (max(state.tat - now, 0.0) - _TIME_EPSILON) / interval
        remaining = max(0, int(capacity - level))
        return Decision(False, remaining, math.inf if cost > capacity else excess)

    def _idle(self, state: _Tat, now: float) -> bool:
        return state.tat <= now


class _Window:
    """A fixed window's index and count (and the previous window's, for the counter)."""

    __slots__ = ("count", "previous", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0
        self.previous = 0


class LocalFixedWindow(LocalLimiter[_Window]):
    """``limit`` units per window; windows start at multiples of ``period`` on the clock."""

    def _new_state(self, now: float) -> _Window:
        return _Window(math.floor(now / self.quota.period))

    def _decide(self, state: _Window, now: float, cost: int) -> Decision:
        limit, period = self.quota.limit, self.quota.period
        window = math.floor(now / period)
        if state.window != window:
            state.window, state.count = window, 0
        if state.count + cost <= limit:
            state.count += cost
            return Decision(True, limit - state.count, 0.0)
        retry = math.inf if cost > limit else (window + 1) * period - now
        return Decision(False, limit - state.count, retry)

    def _idle(self, state: _Window, now: float) -> bool:
        return state.window < math.floor(now / self.quota.period)


class _Log:
    """Admitted requests, oldest first, as ``(time, cost)``, and their total cost."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0


class LocalSlidingWindowLog(LocalLimiter[_Log]):
    """At most ``limit`` units in any ``period`` seconds, exactly, from a log per key.

    An entry admitted at ``t`` counts until ``t + period`` (exclusive). Memory per key is
    proportional to the requests admitted in one period.
    """

    def _new_state(self, now: float) -> _Log:
        return _Log()

    def _decide(self, state: _Log, now: float, cost: int) -> Decision:
        limit, period = self.quota.limit, self.quota.period
        entries = state.entries
        horizon = now - period
        while entries and entries[0][0] <= horizon:
            state.total -= entries.popleft()[1]
        if state.total + cost <= limit:
            if cost:
                entries.append((now, cost))
                state.total += cost
            return Decision(True, limit - state.total, 0.0)
        if cost > limit:
            return Decision(False, limit - state.total, math.inf)
        # The request fits once enough of the oldest entries have aged out.
        to_free = state.total + cost - limit
        freed = 0
        for admitted_at, admitted_cost in entries:
            freed += admitted_cost
            if freed >= to_free:
                return Decision(False, limit - state.total, admitted_at + period - now)
        raise AssertionError("unreachable: the log holds more than to_free units")

    def _idle(self, state: _Log, now: float) -> bool:
        return not state.entries or state.entries[-1][0] <= now - self.quota.period


class LocalSlidingWindowCounter(LocalLimiter[_Window]):
    """The approximate sliding window: this window's count plus the previous window's,
    weighted by how much of it the sliding window still covers.

    Exact when requests are spread evenly over the previous window; two integers per key.
    """

    def _new_state(self, now: float) -> _Window:
        return _Window(math.floor(now / self.quota.period))

    def _decide(self, state: _Window, now: float, cost: int) -> Decision:
        limit, period = self.quota.limit, self.quota.period
        window = math.floor(now / period)
        if state.window != window:
            state.previous = state.count if state.window == window - 1 else 0
            state.count, state.window = 0, window
        elapsed = now - window * period
        estimate = state.previous * (1.0 - elapsed / period) + state.count
        if estimate + cost <= limit + _EPSILON:
            state.count += cost
            return Decision(True, max(0, int(limit - estimate - cost + _EPSILON)), 0.0)
        remaining = max(0, int(limit - estimate + _EPSILON))
        return Decision(False, remaining, _counter_retry_after(state, cost, limit, period, now))

    def _idle(self, state: _Window, now: float) -> bool:
        return state.window < math.floor(now / self.quota.period) - 1


def _counter_retry_after(state: _Window, cost: int, limit: int, period: float, now: float) -> float:
    """Seconds until ``previous * weight + count + cost <= limit`` holds again."""
    if cost > limit:
        return math.inf
    window_start = state.window * period
    if state.count + cost <= limit:
        # Within this window, once the previous window's weight has decayed enough.
        fits_at = period * (1.0 - (limit - state.count - cost) / state.previous)
        return window_start + fits_at - now
    # Not before the next window, where this window's count becomes the decaying one.
    fits_at = period * (1.0 - (limit - cost) / state.count) if state.count else 0.0
    return window_start + period + max(0.0, fits_at) - now


LOCAL_LIMITERS: dict[Algorithm, type[LocalLimiter[Any]]] = {
    Algorithm.TOKEN_BUCKET: LocalTokenBucket,
    Algorithm.LEAKY_BUCKET: LocalLeakyBucket,
    Algorithm.FIXED_WINDOW: LocalFixedWindow,
    Algorithm.SLIDING_WINDOW: LocalSlidingWindowLog,
    Algorithm.SLIDING_WINDOW_APPROX: LocalSlidingWindowCounter,
}
"""The in-process limiter class of each algorithm."""
