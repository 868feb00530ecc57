"""HTTP rate limiting by rules: per client IP, per logged-in user, or cluster-wide.

:class:`RateLimits` holds the rules (:class:`~gateway.middleware.edge_settings.RateLimitRule`)
and a limiter per rule (:mod:`kit.ratelimit`); :meth:`RateLimits.check` counts a request
against a group of rules. :class:`~gateway.middleware.gateway_layer.GatewayLayer` checks two
groups (:meth:`RateLimits.rules_for`):

- with the guards, before the login check, the ``ip`` and ``global`` rules: floods are
  refused before any token is verified or route runs;
- after the login check, the ``user`` rules: the user id (``scope["state"]["uid"]``, set by
  the login check) only exists there. A ``user`` rule skips requests without one.

A request must pass every matching rule, in configuration order; the first refusal answers
HTTP 429 with ``Retry-After`` (whole seconds, at least 1) and
``{"code": 429, "msg": ..., "data": null}``. Paths in ``exempt_paths`` are never limited.

Redis-backed rules go through :class:`~kit.ratelimit.ResilientLimiter`: while Redis is
unreachable, each rule's ``on_backend_error`` policy decides (fail open, fail closed = 429,
or the rule's in-process limiter), logged once per outage. Until :meth:`RateLimits.open`
hands over a Redis client, Redis rules behave as if Redis were down.

**Live rules.** :meth:`RateLimits.replace` swaps the whole rule table at run time (the
gateway calls it when its live ``rate_limits`` setting changes): the groups handed out by
:meth:`RateLimits.rules_for` are :class:`RuleGroup` views that follow the swap, so the next
request is checked against the new rules. A rule whose configuration did not change keeps
its limiter (and so its counts); a new or changed rule starts with a fresh one.

Metrics: ``webook_ratelimit_requests_total{rule,result}`` and
``webook_ratelimit_backend_errors_total{rule,policy}`` (see
:mod:`gateway.middleware.edge_metrics`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import re
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, overload

import redis.asyncio as aioredis
from starlette.responses import Response
from starlette.types import Scope

from gateway.envelope import note_envelope_code
from gateway.middleware.client_ip import TrustedProxies
from gateway.middleware.edge_metrics import RATELIMIT_BACKEND_ERRORS, RATELIMIT_REQUESTS
from gateway.middleware.edge_settings import KeyBy, RateLimitRule
from kit.ratelimit import (
    LOCAL_LIMITERS,
    REDIS_LIMITERS,
    Clock,
    Decision,
    FailurePolicy,
    Limiter,
    RateLimitBackendError,
    RedisLimiter,
    ResilientLimiter,
)

logger = logging.getLogger(__name__)

GLOBAL_KEY: Final = "all"
_CODE: Final = 429
_BODY: Final = json.dumps(
    {"code": _CODE, "msg": "too many requests, please retry later", "data": None}
).encode()
_POLICY_DECIDES: Final = frozenset({FailurePolicy.FAIL_OPEN, FailurePolicy.FAIL_CLOSED})


class _RedisNotOpened:
    """The backend of Redis rules before :meth:`RateLimits.open`: always unreachable."""

    async def acquire(self, key: str, cost: int = 1) -> Decision:
        raise RateLimitBackendError("no Redis client yet (RateLimits.open was not called)")


class Rule:
    """A configured rule, compiled, with its limiter and metric children."""

    def __init__(self, config: RateLimitRule, limiter: Limiter) -> None:
        self.config = config
        self.name = config.name
        self.limiter = limiter
        self.methods = config.methods
        self.exact_paths = frozenset(p for p in config.paths if not _is_glob(p))
        globs = [fnmatch.translate(p) for p in config.paths if _is_glob(p)]
        self.pattern = re.compile("|".join(globs)) if globs else None
        self.allowed = RATELIMIT_REQUESTS.labels(self.name, "allowed")
        self.rejected = RATELIMIT_REQUESTS.labels(self.name, "rejected")
        self.error = RATELIMIT_REQUESTS.labels(self.name, "error")
        self.backend_error = RATELIMIT_BACKEND_ERRORS.labels(
            self.name, config.on_backend_error.value
        )
        period = config.period
        self.never_retry_after = max(1, math.ceil(period))

    def applies_to(self, path: str, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return path in self.exact_paths or (
            self.pattern is not None and self.pattern.match(path) is not None
        )

    def record(self, decision: Decision) -> None:
        if decision.degraded:
            self.backend_error.inc()
            if self.config.on_backend_error in _POLICY_DECIDES:
                self.error.inc()
                return
        (self.allowed if decision.allowed else self.rejected).inc()


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class RuleGroup(Sequence[Rule]):
    """The rules of :class:`RateLimits` counting per some keys, following rule swaps.

    A read-only sequence whose content :meth:`RateLimits.replace` changes in one assignment:
    a request sees either the old rules or the new ones, never a mix.
    """

    __slots__ = ("_rules", "keys")

    def __init__(self, keys: Collection[KeyBy], rules: Sequence[Rule]) -> None:
        self.keys = frozenset(keys)
        self._rules: tuple[Rule, ...] = ()
        self.select(rules)

    def select(self, rules: Sequence[Rule]) -> None:
        """Hold the rules of ``rules`` that count per one of :attr:`keys`, in order."""
        self._rules = tuple(rule for rule in rules if rule.config.key in self.keys)

    @overload
    def __getitem__(self, index: int) -> Rule: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Rule]: ...
    def __getitem__(self, index: int | slice) -> Rule | Sequence[Rule]:
        return self._rules[index]

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RuleGroup):
            return self._rules == other._rules
        if isinstance(other, tuple):
            return self._rules == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        return f"RuleGroup({[rule.name for rule in self._rules]!r})"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused: the rule and its decision."""

    rule: str
    decision: Decision
    retry_after: int

    def response(self) -> Response:
        """The HTTP 429 answer."""
        note_envelope_code(_CODE)
        return Response(
            _BODY,
            status_code=429,
            media_type="application/json",
            headers={"Retry-After": str(self.retry_after)},
        )


class RateLimits:
    """The rules and their limiters, checked in groups (:meth:`rules_for`, :meth:`check`).

    Args:
        rules: the rules, in checking order.
        proxies: resolves the client IP for ``ip`` rules.
        exempt_paths: exact paths never limited.
        key_prefix: prefix of every Redis key (``<prefix>:<rule>:<algorithm>:<key>``).
        batching: coalesce concurrent checks of a rule into shared Redis round trips.
        retry_interval: seconds between attempts to reach a failing Redis.
        local_max_keys: most keys each in-process limiter remembers.
        clock: monotonic clock of the in-process limiters and the retry interval.
    """

    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        *,
        proxies: TrustedProxies,
        exempt_paths: Collection[str] = (),
        key_prefix: str = "webook:ratelimit",
        batching: bool = True,
        retry_interval: float = 1.0,
        local_max_keys: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        """Build the in-process limiters now; Redis ones wait for :meth:`open`."""
        self.proxies = proxies
        self.exempt_paths = frozenset(exempt_paths)
        self._key_prefix = key_prefix
        self._batching = batching
        self._retry_interval = retry_interval
        self._local_max_keys = local_max_keys
        self._clock = clock
        self._redis: aioredis.Redis | None = None
        # The Redis limiters of each rule by name: their batch flushers stop with the rule.
        self._redis_limiters: dict[str, list[RedisLimiter]] = {}
        self._groups: list[RuleGroup] = []
        self.rules: tuple[Rule, ...] = tuple(
            Rule(rule, self._limiter(rule, None)) for rule in rules
        )

    def open(self, redis: aioredis.Redis) -> None:
        """Start using ``redis`` (owned by the caller) for the Redis-backed rules."""
        self._redis = redis
        for rule in self.rules:
            if rule.config.backend == "redis":
                rule.limiter = self._limiter(rule.config, redis)

    async def aclose(self) -> None:
        """Stop the Redis limiters' batch flushers (the client is the caller's to close)."""
        limiters = [limiter for group in self._redis_limiters.values() for limiter in group]
        self._redis_limiters.clear()
        for limiter in limiters:
            await limiter.aclose()

    def rules_for(self, keys: Collection[KeyBy]) -> RuleGroup:
        """The rules counting per one of ``keys``, in order, following :meth:`replace`."""
        group = RuleGroup(keys, self.rules)
        self._groups.append(group)
        return group

    def replace(self, rules: Sequence[RateLimitRule]) -> None:
        """Check requests against ``rules`` from now on (the live rule table).

        A rule equal to one in force keeps its limiter and counts; the others get new
        limiters (Redis-backed once :meth:`open` was called). The limiters of rules that
        left or changed are dropped, not closed: checks already queued on them are still
        answered, and their batch flushers end by themselves once idle.
        """
        current = {rule.name: rule for rule in self.rules}
        previous, self._redis_limiters = self._redis_limiters, {}
        fresh: list[Rule] = []
        kept: list[str] = []
        for config in rules:
            old = current.get(config.name)
            if old is not None and old.config == config:
                fresh.append(old)
                kept.append(config.name)
                if config.name in previous:
                    self._redis_limiters[config.name] = previous[config.name]
            else:
                fresh.append(Rule(config, self._limiter(config, self._redis)))
        self.rules = tuple(fresh)
        for group in self._groups:
            group.select(self.rules)
        names = [rule.name for rule in self.rules]
        logger.info(
            "rate-limit rules replaced",
            extra={
                "rules": names,
                "kept": kept,
                "removed": sorted(set(current) - set(names)),
            },
        )

    def _limiter(self, rule: RateLimitRule, redis: aioredis.Redis | None) -> Limiter:
        def local() -> Limiter:
            return LOCAL_LIMITERS[rule.algorithm](
                rule.quota, clock=self._clock, max_keys=self._local_max_keys
            )

        if rule.backend == "local":
            return local()
        primary: Limiter = _RedisNotOpened()
        if redis is not None:
            remote = REDIS_LIMITERS[rule.algorithm](
                redis,
                rule.quota,
                prefix=f"{self._key_prefix}:{rule.name}",
                batching=self._batching,
            )
            self._redis_limiters.setdefault(rule.name, []).append(remote)
            primary = remote
        return ResilientLimiter(
            primary,
            policy=rule.on_backend_error,
            fallback=local() if rule.on_backend_error is FailurePolicy.LOCAL else None,
            name=rule.name,
            retry_interval=self._retry_interval,
            clock=self._clock,
        )

    async def check(self, scope: Scope, rules: Sequence[Rule]) -> Refusal | None:
        """Count the request against the matching ``rules``; the refusal, if one refuses."""
        path, method = scope["path"], scope["method"]
        if path in self.exempt_paths:
            return None
        for rule in rules:
            if not rule.applies_to(path, method):
                continue
            key = self._key(rule, scope)
            if key is None:
                continue
            decision = await rule.limiter.acquire(key)
            rule.record(decision)
            if not decision.allowed:
                retry = decision.retry_after
                seconds = rule.never_retry_after if math.isinf(retry) else math.ceil(retry)
                return Refusal(rule.name, decision, max(1, seconds))
        return None

    def _key(self, rule: Rule, scope: Scope) -> str | None:
        kind = rule.config.key
        if kind == "ip":
            return self.proxies.rate_limit_key(scope)
        if kind == "user":
            uid = (scope.get("state") or {}).get("uid")
            return None if uid is None else str(uid)
        return GLOBAL_KEY
