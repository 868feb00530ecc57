"""Session revocation in Redis: how stateless JWTs can still be logged out.

Every token carries its session id (``ssid``). Logging out, or rotating a refresh token,
writes ``users:ssid:<ssid>`` with a lifetime of the refresh TTL (no token of the session
outlives it); a token whose session key exists is refused. Only revoked sessions are
stored, so a login costs no Redis write.

**Fail-static while Redis is unreachable** (``fail_static`` seconds, 300 by default). A
Redis outage must not log the whole site out, nor may it revive a logged-out session:

- a session Redis last said was active stays valid for ``fail_static`` seconds after the
  gateway last knew that was true (with the feed: the last instant the revocation feed
  vouched for its cache; without: the last check Redis answered for that session), counted
  in ``webook_cache_stale_serves_total{cache="gateway_sessions"}``;
- revocations seen meanwhile still apply: every revocation this process saw (a logout or a
  rotation through it, even one Redis failed to record, an announcement received on the
  feed, a check Redis answered "revoked") is kept in memory for the refresh lifetime and
  refuses the session here before anything else is asked;
- so does a session whose token was issued after the gateway's last contact with Redis
  (``issued_at``, the token's ``iat``, to the second; gateway clocks are assumed to agree
  that closely): no revocation of it can have been recorded before that contact, and
  logins keep working during the outage;
- any other session unknown here follows the configured fallback: ``deny`` (treat it as
  revoked: safe, the default) or ``allow`` (treat it as live: available).

The trade-off, written down in docs/gateway.md: a session revoked through *another* gateway
process after this one lost Redis is accepted here for at most ``fail_static`` seconds. A
hung Redis costs a check milliseconds: the check is a read with a fallback
(:func:`kit.redisx.fallback_reads`), so one in flight when Redis froze gives up once Redis
has answered nothing for the client's ``fallback_wait`` (50 ms by default) and takes the
answer above; from then on the client refuses such reads at once until Redis answers, and
the feed tells it as soon as its pings go unanswered. The outage is logged once when it
starts and once when it ends, and every check that needed Redis and did not get it is
counted in ``webook_gateway_session_store_errors_total``.

**Checks answered from memory, kept exact by pub/sub** (``feed=True``, the gateway's
default). A revocation writes the key and publishes the session id on
:data:`REVOKED_CHANNEL` in one MULTI/EXEC transaction; every gateway process subscribes
(:class:`kit.cache.invalidation.InvalidationFeed`) and drops the session from its cache of
check answers when the message arrives. So a busy session costs one Redis round trip per
process, not one per request, and a logout through any gateway stops both tokens on every
gateway as soon as the message is delivered (milliseconds). On any doubt the cache is not
used and every check asks Redis: before the subscription is confirmed, after an error or a
reconnect (the cache is emptied), and when the subscribed connection has not answered a ping
sent in the last ``feed_max_lag`` seconds (1 s: the bound on staleness if the connection
stalls silently). Only answers Redis gave are cached, never the fallback of an outage; the
cache holds at most 100 000 sessions.

**All sessions of a user** (:meth:`SessionRevocations.revoke_user`, ``webookctl sessions
revoke --user``): a mark ``users:revoked-before:<uid>`` holding an instant T (epoch seconds,
kept for the refresh lifetime) refuses every token of that user issued at or before T
(``iat``, whole seconds: a login in the very second of the mark is refused too and must be
repeated). It is written and announced like a logout, in one transaction, on the same
channel (the member ``user:<uid>:<T>``; session ids never contain ``:``), and read in the
same round trip as the session's own key. Every mark this process learns (announced, read,
or written here) is kept in memory for the refresh lifetime and checked before anything
else, so the cache of check answers and the fail-static rules above never let such a token
through.

Without the feed, checks may instead be cached for ``cache_ttl`` seconds (at most 1) per
session id: a session revoked by *another* gateway process is then still accepted here for
at most that long. Either way a revocation through this process takes effect here at once
for the requests that start after it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.errors import GatewayReason
from gateway.settings import SessionCheckFallback
from kit.cache.invalidation import InvalidatedCache, InvalidationFeed, publish_invalidation
from kit.cache.metrics import CACHE_STALE_SERVES
from kit.errors import Unavailable
from kit.redisx import fallback_reads

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "users:ssid:"
# users:revoked-before:<uid> -> T: the user's tokens issued at or before T are refused.
USER_KEY_PREFIX: Final = "users:revoked-before:"
# The announcement of a user mark on REVOKED_CHANNEL: user:<uid>:<T>.
USER_MEMBER_PREFIX: Final = "user:"
# Where revoked session ids are announced to every gateway process.
REVOKED_CHANNEL: Final = "webook:gateway:sessions:revoked"
# Most session ids the check cache holds; beyond, it is emptied (a burst of new sessions).
CACHE_MAX_ENTRIES: Final = 100_000
# Seconds a session known active stays valid while Redis is unreachable.
DEFAULT_FAIL_STATIC_SECONDS: Final = 300.0
# The ``cache`` label of the fail-static answers in webook_cache_stale_serves_total.
STALE_CACHE_NAME: Final = "gateway_sessions"

SESSION_STORE_ERRORS = Counter(
    "webook_gateway_session_store_errors_total",
    "Session revocation checks or writes that failed because Redis did not answer.",
    ["operation", "fallback"],
)


class SessionStoreUnavailable(Unavailable):
    """A revocation could not be recorded because Redis is unreachable."""


class SessionRevocations:
    """The set of revoked session ids, kept in Redis.

    Args:
        redis: the client; owned by the caller.
        ttl: how long a revocation is remembered (the refresh-token lifetime).
        on_error: ``deny`` or ``allow`` a session whose state cannot be read.
        cache_ttl: without ``feed``, seconds a check's answer is reused for the same session
            id (0: never); see the module docstring.
        feed: cache check answers until a revocation is announced on
            :data:`REVOKED_CHANNEL` (call :meth:`start` and :meth:`aclose`).
        feed_max_lag: seconds the subscription may go unconfirmed before checks ask Redis.
        fail_static: seconds a session known active stays valid while Redis is unreachable
            (0: off); see the module docstring.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: timedelta,
        on_error: SessionCheckFallback,
        cache_ttl: float = 0.0,
        feed: bool = False,
        feed_max_lag: float = 1.0,
        fail_static: float = DEFAULT_FAIL_STATIC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0 or fail_static < 0:
            raise ValueError("cache_ttl and fail_static must not be negative")
        self._redis = redis
        self._bounded = fallback_reads(redis)
        self._ttl = max(1, int(ttl.total_seconds()))
        self._on_error = on_error
        self._outage = False
        self._clock = clock
        self._cache_ttl = 0.0 if feed else cache_ttl
        self._fail_static = fail_static
        self._stale_serves = CACHE_STALE_SERVES.labels(STALE_CACHE_NAME)
        # When (monotonic) Redis last answered a check or a write of this store.
        self._last_contact: float | None = None
        # ssid -> until when (monotonic) it is known revoked: every revocation seen here.
        self._revoked: dict[str, float] = {}
        # uid -> (T, until when it is kept): every user mark seen here.
        self._user_marks: dict[int, tuple[float, float]] = {}
        # ssid -> (whether active, when the answer expires); the TTL cache, without the feed.
        self._cache: dict[str, tuple[bool, float]] = {}
        # ssid -> when Redis last said it was active; fail-static without the feed.
        self._last_active: dict[str, float] | None = None
        # ssid -> whether active; the exact cache, with the feed.
        self._checked: InvalidatedCache[str, bool] | None = None
        self._feed: InvalidationFeed | None = None
        if feed:
            checked: InvalidatedCache[str, bool] = InvalidatedCache(
                max_entries=CACHE_MAX_ENTRIES,
                max_age=float(self._ttl),
                stale_for=fail_static,
                name=STALE_CACHE_NAME,
                clock=clock,
            )
            self._feed = InvalidationFeed(
                redis,
                REVOKED_CHANNEL,
                name="gateway_sessions",
                on_message=self._announced,
                on_reset=checked.clear,
                on_lost=checked.lost,
                max_lag=feed_max_lag,
                clock=clock,
            )
            checked.attach(self._feed)
            self._checked = checked
        elif fail_static:
            self._last_active = {}

    @property
    def cache_ttl(self) -> float:
        """Seconds a check's answer is reused without the feed (0 with it)."""
        return self._cache_ttl

    @cache_ttl.setter
    def cache_ttl(self, seconds: float) -> None:
        # Live (session_check_cache_ttl): answers cached before keep their expiry, which
        # is at most the old value away. With the feed the TTL cache is not used.
        if seconds < 0:
            raise ValueError("cache_ttl must not be negative")
        if self._feed is None:
            self._cache_ttl = seconds
            if not seconds:
                self._cache.clear()

    @property
    def feed(self) -> InvalidationFeed | None:
        """The revocation subscription (None when checks are not cached that way)."""
        return self._feed

    def start(self) -> None:
        """Subscribe to revocations (inside the running loop); no-op without the feed."""
        if self._feed is not None:
            self._feed.start()

    async def aclose(self) -> None:
        """Unsubscribe; checks ask Redis from now on."""
        if self._feed is not None:
            await self._feed.aclose()

    @property
    def serving_stale(self) -> bool:
        """Whether checks are now answered fail-static (with the feed: Redis unreachable
        and the feed's last word recent enough)."""
        return self._checked is not None and self._checked.serving_stale

    async def is_active(
        self, ssid: str, *, issued_at: float | None = None, uid: int | None = None
    ) -> bool:
        """Whether the session has not been revoked (see the module docstring for caching
        and for what happens while Redis is unreachable; ``issued_at``: the token's ``iat``,
        epoch seconds; ``uid``: its user, whose mark is checked when both are given)."""
        if self._revoked and self._known_revoked(ssid):
            return False
        user_checked = uid is not None and issued_at is not None
        if (
            uid is not None
            and issued_at is not None
            and self._user_marks
            and self._marked(uid, issued_at)
        ):
            return False
        checked = self._checked
        ticket = 0
        if checked is not None:
            # Exact while the feed is fresh; the fail-static answer while Redis is down.
            known = checked.get(ssid)
            if known is not None:
                return known
            ticket = checked.ticket()
        elif self._cache_ttl:
            cached = self._cache.get(ssid)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
        try:
            if user_checked:
                session, mark = await self._bounded(
                    self._redis.mget(KEY_PREFIX + ssid, f"{USER_KEY_PREFIX}{uid}")
                )
                revoked = session is not None
            else:
                revoked = bool(await self._bounded(self._redis.exists(KEY_PREFIX + ssid)))
                mark = None
        except (RedisError, OSError) as exc:
            return self._unreachable(ssid, exc, issued_at)
        self._recovered()
        if mark is not None and uid is not None:
            before = _mark_value(mark)
            if before is not None:
                self._remember_mark(uid, before)
                if issued_at is not None and issued_at <= before:
                    return False
        active = not revoked
        if not active:
            self._remember_revoked(ssid)
        if checked is not None:
            checked.put(ssid, active, ticket)
        elif self._cache_ttl:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[ssid] = (active, self._clock() + self._cache_ttl)
        if active and self._last_active is not None:
            self._bounded_put(self._last_active, ssid, self._clock())
        return active

    def _unreachable(self, ssid: str, exc: BaseException, issued_at: float | None) -> bool:
        """Redis did not answer the check: the fail-static answer, else the fallback."""
        if self._checked is not None:
            # The failure just marked Redis down, so the copy may now be answered stale.
            known = self._checked.get(ssid)
            if known is not None:
                self._report("check", exc)
                return known
        elif self._last_active is not None:
            seen = self._last_active.get(ssid)
            if seen is not None and self._clock() - seen <= self._fail_static:
                self._stale_serves.inc()
                self._report("check", exc)
                return True
        if issued_at is not None and self._issued_since_last_contact(issued_at):
            self._stale_serves.inc()
            self._report("check", exc)
            return True
        return self._fallback("check", exc)

    def _issued_since_last_contact(self, issued_at: float) -> bool:
        """Whether a token issued at ``issued_at`` (epoch s) started after the last contact
        with Redis, within the fail-static window."""
        if not self._fail_static:
            return False
        contacts = [self._last_contact]
        if self._feed is not None:
            contacts.append(self._feed.vouched_at)
        known = [c for c in contacts if c is not None]
        if not known:
            return False
        elapsed = self._clock() - max(known)
        if elapsed > self._fail_static:
            return False
        # iat has whole seconds: a token of the contact's own second counts as after it.
        return issued_at >= math.floor(time.time() - elapsed)

    def _marked(self, uid: int, issued_at: float) -> bool:
        """Whether a user mark known here refuses a token of ``uid`` issued at ``issued_at``."""
        entry = self._user_marks.get(uid)
        if entry is None:
            return False
        before, until = entry
        if until <= self._clock():
            del self._user_marks[uid]
            return False
        return issued_at <= before

    def _remember_mark(self, uid: int, before: float) -> None:
        known = self._user_marks.pop(uid, None)
        if known is not None:
            before = max(before, known[0])
        if len(self._user_marks) >= CACHE_MAX_ENTRIES:
            del self._user_marks[next(iter(self._user_marks))]
        self._user_marks[uid] = (before, self._clock() + self._ttl)

    def _known_revoked(self, ssid: str) -> bool:
        until = self._revoked.get(ssid)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._revoked[ssid]
        return False

    def _remember_revoked(self, ssid: str) -> None:
        self._bounded_put(self._revoked, ssid, self._clock() + self._ttl)

    @staticmethod
    def _bounded_put(entries: dict[str, float], ssid: str, value: float) -> None:
        entries.pop(ssid, None)
        if len(entries) >= CACHE_MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[ssid] = value

    def _announced(self, member: bytes) -> None:
        """A revocation announced on the feed: dropped from the cache, remembered here."""
        ssid = member.decode()
        if ssid.startswith(USER_MEMBER_PREFIX):
            mark = _parse_user_member(ssid)
            if mark is not None:
                self._remember_mark(*mark)
                return
        self._remember_revoked(ssid)
        if self._checked is not None:
            self._checked.invalidate(ssid)

    async def revoke(self, ssid: str) -> None:
        """End the session: every token carrying ``ssid`` is refused from now on.

        Raises:
            SessionStoreUnavailable: Redis did not record it (this process refuses the
                session all the same; other processes do not learn of it).
        """
        self._remember_revoked(ssid)
        try:
            await self._write(ssid, nx=False)
        except (RedisError, OSError) as exc:
            self._report("revoke", exc)
            raise SessionStoreUnavailable(
                GatewayReason.SESSION_STORE_UNAVAILABLE, "session store unavailable"
            ) from exc
        self._forget(ssid)
        self._recovered()

    async def revoke_user(self, uid: int, *, before: float | None = None) -> float:
        """Refuse every token of user ``uid`` issued at or before ``before`` (default: now,
        epoch seconds); returns that instant. Written and announced in one transaction
        (like :meth:`revoke`); a later mark replaces an earlier one.

        Raises:
            SessionStoreUnavailable: Redis did not record it (this process refuses the
                tokens all the same; other processes do not learn of it).
        """
        at = time.time() if before is None else before
        self._remember_mark(uid, at)
        key = f"{USER_KEY_PREFIX}{uid}"
        value = repr(at)
        try:
            # Always announced: gateways with the feed listen even when this store (the
            # operator's tool) runs without it.
            command: tuple[object, ...] = ("SET", key, value, "EX", self._ttl)
            member = f"{USER_MEMBER_PREFIX}{uid}:{value}"
            await publish_invalidation(self._redis, REVOKED_CHANNEL, member, command)
        except (RedisError, OSError) as exc:
            self._report("revoke_user", exc)
            raise SessionStoreUnavailable(
                GatewayReason.SESSION_STORE_UNAVAILABLE, "session store unavailable"
            ) from exc
        self._recovered()
        logger.info("user sessions revoked", extra={"uid": uid, "before": at})
        return at

    async def revoke_if_active(self, ssid: str) -> bool:
        """Revoke the session unless it already was; True if this call revoked it.

        One atomic ``SET NX``, so two concurrent refreshes with the same token cannot both
        succeed.
        """
        try:
            created = await self._write(ssid, nx=True)
        except (RedisError, OSError) as exc:
            rotated = self._fallback("rotate", exc)
            if rotated:
                # Rotated without Redis: at least this process refuses the old session.
                self._remember_revoked(ssid)
            return rotated
        self._remember_revoked(ssid)
        self._forget(ssid)
        self._recovered()
        return created

    async def _write(self, ssid: str, *, nx: bool) -> bool:
        """Record the revocation; True if the key was created (always, unless ``nx``)."""
        key = KEY_PREFIX + ssid
        if self._feed is None:
            return bool(await self._redis.set(key, 1, ex=self._ttl, nx=nx))
        # The key and its announcement in one transaction: never one without the other.
        # Announcing an already revoked session again (a lost NX race) is harmless.
        command: tuple[object, ...] = ("SET", key, 1, "EX", self._ttl, *(("NX",) if nx else ()))
        replies = await publish_invalidation(self._redis, REVOKED_CHANNEL, ssid, command)
        return bool(replies[0])

    def _forget(self, ssid: str) -> None:
        self._cache.pop(ssid, None)
        if self._checked is not None:
            self._checked.invalidate(ssid)

    def _fallback(self, operation: str, exc: BaseException) -> bool:
        self._report(operation, exc)
        return self._on_error == "allow"

    def _report(self, operation: str, exc: BaseException) -> None:
        SESSION_STORE_ERRORS.labels(operation, self._on_error).inc()
        if not self._outage:
            self._outage = True
            logger.warning(
                "session store unreachable; sessions known active stay valid for %s s, "
                "other sessions are %s until it recovers",
                self._fail_static,
                "denied" if self._on_error == "deny" else "allowed unchecked",
                extra={"operation": operation, "error": repr(exc), "fallback": self._on_error},
            )

    def _recovered(self) -> None:
        self._last_contact = self._clock()
        if self._outage:
            self._outage = False
            logger.info("session store reachable again")


def _mark_value(raw: bytes | str) -> float | None:
    """T of a user mark's Redis value, or None (logged) if it is not a number."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return float(text)
    except ValueError:
        logger.warning("ignoring a malformed user revocation mark", extra={"value": text})
        return None


def _parse_user_member(member: str) -> tuple[int, float] | None:
    """``(uid, T)`` of an announced ``user:<uid>:<T>``, or None if malformed."""
    _, _, rest = member.partition(USER_MEMBER_PREFIX)
    uid, sep, before = rest.partition(":")
    try:
        return (int(uid), float(before)) if sep else None
    except ValueError:
        return None
