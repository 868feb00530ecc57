"""Issue and verify the gateway's JWTs (HS256).

A login yields a pair of tokens sharing one random session id (``ssid``):

- the **access** token (short-lived, sent on every request) signed with the access key;
- the **refresh** token (long-lived, only for ``/users/refresh_token``) signed with a
  different key.

Both carry ``uid``, ``ssid``, ``typ`` ("access"/"refresh"), ``iat``, ``exp`` and ``ua``, a
fingerprint of the User-Agent they were issued to. Verification pins the algorithm to HS256
(so ``alg: none`` and algorithm-confusion tokens fail), checks the signature with the key of
the expected type *and* the ``typ`` claim (so one kind is never accepted as the other), the
expiry, and that the presenting User-Agent has the same fingerprint.

Access tokens are presented on every request, so the claims of the ones that verified are
remembered (at most ``verified_cache_size`` tokens, the oldest dropped first), keyed by the
exact token string *and* the presenting User-Agent, until the token's ``exp``: a token
seen before is then accepted with a dictionary lookup instead of an HMAC and a JSON
decode. Only successful verifications are remembered, so a forged, altered or expired
token, or a known token from another User-Agent, is always verified (and refused) in full.
Revocation is not part of verification: the session check still runs on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

import jwt

ALGORITHM: Final = "HS256"
_REQUIRED_CLAIMS: Final = ["uid", "ssid", "typ", "ua", "iat", "exp"]
# 32 hex characters (128 bits) of sha256 are plenty to tell User-Agents apart.
_FINGERPRINT_LENGTH: Final = 32
# Verified access tokens remembered per process (a few hundred bytes each).
DEFAULT_VERIFIED_CACHE_SIZE: Final = 100_000


class TokenType(StrEnum):
    """Which of the two tokens a JWT is."""

    ACCESS = "access"
    REFRESH = "refresh"


class InvalidToken(Exception):
    """The token is malformed, forged, expired, of the wrong type or from another client."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of a token."""

    uid: int
    ssid: str
    typ: TokenType
    ua: str
    iat: int
    exp: int


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A freshly issued access and refresh token for one new session."""

    access: str
    refresh: str
    ssid: str


def user_agent_fingerprint(user_agent: str) -> str:
    """The ``ua`` claim for a User-Agent header value: truncated hex sha256."""
    return hashlib.sha256(user_agent.encode()).hexdigest()[:_FINGERPRINT_LENGTH]


def new_session_id() -> str:
    """A random, unguessable session id."""
    return secrets.token_urlsafe(16)


class TokenService:
    """Signs and checks tokens; pure computation, no I/O.

    Args:
        access_key: HS256 key for access tokens.
        refresh_key: a different HS256 key for refresh tokens.
        access_ttl: lifetime of access tokens.
        refresh_ttl: lifetime of refresh tokens.
        clock: seconds since the epoch (injectable for tests).
        verified_cache_size: access tokens whose verification is remembered (0: none).
    """

    def __init__(
        self,
        *,
        access_key: str,
        refresh_key: str,
        access_ttl: timedelta,
        refresh_ttl: timedelta,
        clock: Callable[[], float] = time.time,
        verified_cache_size: int = DEFAULT_VERIFIED_CACHE_SIZE,
    ) -> None:
        if verified_cache_size < 0:
            raise ValueError("verified_cache_size must not be negative")
        if access_key == refresh_key:
            raise ValueError("access and refresh tokens must be signed with different keys")
        self._keys: Mapping[TokenType, str] = {
            TokenType.ACCESS: access_key,
            TokenType.REFRESH: refresh_key,
        }
        self._ttls: Mapping[TokenType, int] = {
            TokenType.ACCESS: int(access_ttl.total_seconds()),
            TokenType.REFRESH: int(refresh_ttl.total_seconds()),
        }
        self._clock = clock
        self._verified_max = verified_cache_size
        # (token, User-Agent) -> claims of an access token that verified.
        self._verified: dict[tuple[str, str], TokenClaims] = {}

    def issue(self, uid: int, user_agent: str) -> TokenPair:
        """Tokens for a new session of ``uid`` on the client identified by ``user_agent``."""
        ssid = new_session_id()
        fingerprint = user_agent_fingerprint(user_agent)
        now = int(self._clock())
        return TokenPair(
            access=self._sign(TokenType.ACCESS, uid, ssid, fingerprint, now),
            refresh=self._sign(TokenType.REFRESH, uid, ssid, fingerprint, now),
            ssid=ssid,
        )

    def verify(self, token: str, typ: TokenType, user_agent: str) -> TokenClaims:
        """The claims of ``token`` if it is a valid, unexpired ``typ`` token for this client.

        Raises:
            InvalidToken: for any reason the token cannot be trusted.
        """
        if typ is TokenType.ACCESS and self._verified_max:
            key = (token, user_agent)
            known = self._verified.get(key)
            if known is not None:
                # PyJWT's rule, without leeway: a token is expired from its exp on.
                if known.exp > self._clock():
                    return known
                del self._verified[key]
            claims = self._verify(token, typ, user_agent)
            verified = self._verified
            if len(verified) >= self._verified_max:
                del verified[next(iter(verified))]
            verified[key] = claims
            return claims
        return self._verify(token, typ, user_agent)

    def _verify(self, token: str, typ: TokenType, user_agent: str) -> TokenClaims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._keys[typ],
                algorithms=[ALGORITHM],
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        uid, ssid, ua = claims["uid"], claims["ssid"], claims["ua"]
        if claims["typ"] != typ.value:
            raise InvalidToken(f"expected a {typ.value} token")
        if isinstance(uid, bool) or not isinstance(uid, int) or uid <= 0:
            raise InvalidToken("malformed uid claim")
        if not isinstance(ssid, str) or not ssid or not isinstance(ua, str):
            raise InvalidToken("malformed session claims")
        if not hmac.compare_digest(ua.encode(), user_agent_fingerprint(user_agent).encode()):
            raise InvalidToken("token presented by a different client")
        exp = int(claims["exp"])
        # PyJWT checks exp against the system clock; the remembered tokens are checked
        # against ours, so refuse by ours too (the same clock in production).
        if exp <= self._clock():
            raise InvalidToken("token expired")
        return TokenClaims(uid=uid, ssid=ssid, typ=typ, ua=ua, iat=int(claims["iat"]), exp=exp)

    def _sign(self, typ: TokenType, uid: int, ssid: str, fingerprint: str, now: int) -> str:
        payload = {
            "uid": uid,
            "ssid": ssid,
            "typ": typ.value,
            "ua": fingerprint,
            "iat": now,
            "exp": now + self._ttls[typ],
        }
        return jwt.encode(payload, self._keys[typ], algorithm=ALGORITHM)
