"""The authenticated caller of the current request.

The login-check middleware puts it in ``request.state`` (``uid``, ``ssid``, ``principal``)
and in :data:`current_principal`, so code below the routes can read it without plumbing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """A logged-in user and the session their token belongs to."""

    uid: int
    ssid: str


current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
