"""The WeChat login's ``state``: a random value bound to the browser by a signed cookie.

WeChat sends the browser back to our callback with a temporary ``code`` and the ``state`` we
put in the authorize URL. Anyone holding a leaked ``code`` could otherwise make a victim's
browser complete *their* login (login CSRF), so the callback accepts a ``state`` only if it
equals the one sealed in this browser's cookie when the login started.

The cookie holds an HS256 JWT (audience ``webook-wechat-state``) with the state and an
expiry (10 minutes by default); it is ``HttpOnly``, ``SameSite=Lax`` (sent on WeChat's
top-level redirect back to us) and ``Secure`` where configured, scoped to ``/oauth2/wechat``.
A missing, expired, forged or mismatching cookie raises :class:`InvalidOAuthState`. States
are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

import jwt
from starlette.responses import Response

from gateway.errors import GATEWAY_DOMAIN, GatewayReason
from kit.errors import InvalidArgument

STATE_COOKIE: Final = "webook_wechat_state"
STATE_COOKIE_PATH: Final = "/oauth2/wechat"
_AUDIENCE: Final = "webook-wechat-state"
_ALGORITHM: Final = "HS256"
# Longer states are not ours: refuse them before any comparison.
MAX_STATE_CHARS: Final = 128


class InvalidOAuthState(InvalidArgument):
    """The callback's ``state`` is not the one this browser started a login with.

    ``metadata["problem"]`` says why (``missing_cookie``, ``expired``, ``forged``,
    ``missing_state``, ``mismatch``), for logs only: every case gets the same answer.
    """

    default_domain = GATEWAY_DOMAIN

    def __init__(self, problem: str) -> None:
        super().__init__(
            GatewayReason.WECHAT_STATE_INVALID,
            "the WeChat login expired or was started elsewhere",
            metadata={"problem": problem},
        )


def new_state() -> str:
    """A fresh, unguessable state (192 bits)."""
    return secrets.token_urlsafe(24)


class StateCookies:
    """Seals states into cookies and checks callbacks against them.

    Args:
        key: HS256 key (at least 32 bytes), not shared with any other token.
        ttl: how long a started login stays valid.
        secure: whether the cookie is sent only over HTTPS.
        clock: seconds since the epoch (injectable for tests).
    """

    def __init__(
        self,
        *,
        key: str,
        ttl: timedelta,
        secure: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._ttl = max(1, int(ttl.total_seconds()))
        self._secure = secure
        self._clock = clock

    def seal(self, state: str) -> str:
        """The cookie value carrying ``state``."""
        now = int(self._clock())
        payload = {"state": state, "aud": _AUDIENCE, "iat": now, "exp": now + self._ttl}
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM)

    def attach(self, response: Response, state: str) -> None:
        """Set the cookie for ``state`` on ``response``."""
        response.set_cookie(
            STATE_COOKIE,
            self.seal(state),
            max_age=self._ttl,
            path=STATE_COOKIE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response) -> None:
        """Remove the cookie: a state serves one callback."""
        response.delete_cookie(
            STATE_COOKIE,
            path=STATE_COOKIE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )

    def check(self, cookie: str | None, state: str | None) -> None:
        """Accept ``state`` only if ``cookie`` is ours, unexpired, and seals that state.

        Raises:
            InvalidOAuthState: anything else.
        """
        if not cookie:
            raise InvalidOAuthState("missing_cookie")
        try:
            claims: dict[str, Any] = jwt.decode(
                cookie,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                options={"require": ["state", "aud", "exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidOAuthState("expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidOAuthState("forged") from exc
        if not state or len(state) > MAX_STATE_CHARS:
            raise InvalidOAuthState("missing_state")
        sealed = claims["state"]
        if not isinstance(sealed, str) or not hmac.compare_digest(sealed.encode(), state.encode()):
            raise InvalidOAuthState("mismatch")
