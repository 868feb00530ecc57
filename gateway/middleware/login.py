"""The login check: every route needs a valid access token, except an explicit allowlist.

Public routes are passed through untouched; their Authorization header is ignored entirely
(existing clients send ``Bearer null`` before their first login). On other routes the
access token must verify (:class:`~gateway.auth.tokens.TokenService`) and its session must
not be revoked (:class:`~gateway.auth.sessions.SessionRevocations`); otherwise the answer is
HTTP 401 with an empty body (:func:`gateway.errors.unauthorized_response`). The caller is
then put in ``request.state`` (``uid``, ``ssid``, ``principal``), in
:data:`~gateway.auth.principal.current_principal` and in the log context (``user_id``).

:class:`LoginCheck` is the concern as a plain object; the gateway runs it in
:class:`~gateway.middleware.gateway_layer.GatewayLayer`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from contextvars import Token
from typing import Any

from starlette.types import Scope

from gateway.auth.principal import Principal, bearer_token, current_principal
from gateway.auth.tokens import InvalidToken, TokenType
from gateway.deps import Runtime
from kit.logging import bind, log_context

logger = logging.getLogger(__name__)

_Tokens = tuple[Token[Principal | None], Token[Any]]


def _credentials(scope: Scope) -> tuple[str | None, str]:
    """The first ``Authorization`` (None without one) and ``User-Agent`` ("" without one),
    as ``Headers.get`` reads them, in one pass over the raw headers."""
    authorization: bytes | None = None
    user_agent: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"user-agent" and user_agent is None:
            user_agent = value
    return (
        None if authorization is None else authorization.decode("latin-1"),
        "" if user_agent is None else user_agent.decode("latin-1"),
    )


class LoginCheck:
    """Authenticates requests to every path not in ``public_paths``."""

    __slots__ = ("public_paths", "runtime")

    def __init__(self, runtime: Runtime, public_paths: Collection[str]) -> None:
        self.runtime = runtime
        self.public_paths = frozenset(public_paths)

    async def authenticate(self, scope: Scope) -> Principal | None:
        """The caller, if the access token verifies and its session is active."""
        authorization, user_agent = _credentials(scope)
        token = bearer_token(authorization)
        if token is None:
            return None
        try:
            claims = self.runtime.tokens.verify(token, TokenType.ACCESS, user_agent)
        except InvalidToken as exc:
            logger.debug("access token refused", extra={"problem": str(exc)})
            return None
        if not await self.runtime.sessions.is_active(
            claims.ssid, issued_at=claims.iat, uid=claims.uid
        ):
            logger.debug("session revoked or unverifiable", extra={"uid": claims.uid})
            return None
        return Principal(uid=claims.uid, ssid=claims.ssid)

    @staticmethod
    def enter(scope: Scope, principal: Principal) -> _Tokens:
        """Make ``principal`` the request's caller; undo with :meth:`leave`."""
        state = scope.setdefault("state", {})
        state.update(uid=principal.uid, ssid=principal.ssid, principal=principal)
        principal_token = current_principal.set(principal)
        log_token = log_context.set(log_context.get())
        bind(user_id=principal.uid)
        return principal_token, log_token

    @staticmethod
    def leave(tokens: _Tokens) -> None:
        """Restore the contexts :meth:`enter` changed."""
        principal_token, log_token = tokens
        log_context.reset(log_token)
        current_principal.reset(principal_token)
