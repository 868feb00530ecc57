"""The login check: every route needs a valid access token, except an explicit allowlist.

Public routes are passed through untouched; their Authorization header is ignored entirely
(existing clients send ``Bearer null`` before their first login). On other routes the
access token must verify (:class:`~gateway.auth.tokens.TokenService`) and its session must
not be revoked (:class:`~gateway.auth.sessions.SessionRevocations`); otherwise the answer is
HTTP 401 with an empty body. The caller is then put in ``request.state`` (``uid``,
``ssid``, ``principal``), in :data:`~gateway.auth.principal.current_principal` and in the
log context (``user_id``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.principal import Principal, bearer_token, current_principal
from gateway.auth.tokens import InvalidToken, TokenType
from gateway.deps import Runtime
from gateway.errors import unauthorized_response
from kit.logging import bind, log_context

logger = logging.getLogger(__name__)


class LoginCheckMiddleware:
    """Authenticates requests to every path not in ``public_paths``."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime, public_paths: Collection[str]) -> None:
        self.app = app
        self.runtime = runtime
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        principal = await self._authenticate(Headers(scope=scope))
        if principal is None:
            await unauthorized_response()(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state.update(uid=principal.uid, ssid=principal.ssid, principal=principal)
        principal_token = current_principal.set(principal)
        log_token = log_context.set(log_context.get())
        bind(user_id=principal.uid)
        try:
            await self.app(scope, receive, send)
        finally:
            log_context.reset(log_token)
            current_principal.reset(principal_token)

    async def _authenticate(self, headers: Headers) -> Principal | None:
        token = bearer_token(headers.get("authorization"))
        if token is None:
            return None
        try:
            claims = self.runtime.tokens.verify(
                token, TokenType.ACCESS, headers.get("user-agent", "")
            )
        except InvalidToken as exc:
            logger.debug("access token refused", extra={"problem": str(exc)})
            return None
        if not await self.runtime.sessions.is_active(claims.ssid):
            logger.debug("session revoked or unverifiable", extra={"uid": claims.uid})
            return None
        return Principal(uid=claims.uid, ssid=claims.ssid)
