"""Wiring between the composition root and the routes.

:class:`Runtime` holds what requests need from the process: settings, the token service
and the WeChat state cookies (built with the app), and the clients the lifespan opens (the
service stubs, :class:`~gateway.stubs.ServiceStubs`; the session store; the WeChat OAuth
client). Routes get it, and the caller's :class:`~gateway.auth.principal.Principal`,
through the FastAPI dependencies below, which also declare the logged-in routes' OpenAPI
security requirement and 401 answer (:data:`LOGGED_IN`, :data:`NOT_LOGGED_IN`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer

from gateway.auth.oauth_state import StateCookies
from gateway.auth.principal import Principal
from gateway.auth.sessions import SessionRevocations
from gateway.auth.tokens import TokenService
from gateway.auth.wechat import WechatOAuth
from gateway.settings import GatewaySettings
from gateway.stubs import ServiceStubs


@dataclass(frozen=True, slots=True)
class Clients:
    """Connections opened at start-up and closed at shutdown."""

    stubs: ServiceStubs
    sessions: SessionRevocations
    wechat: WechatOAuth


class Runtime:
    """Per-process state shared by middleware and routes."""

    def __init__(
        self, settings: GatewaySettings, tokens: TokenService, state_cookies: StateCookies
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.state_cookies = state_cookies
        self._clients: Clients | None = None

    @property
    def grpc_timeout(self) -> float:
        """Seconds each gRPC call may take."""
        return self.settings.grpc_timeout

    @property
    def clients(self) -> Clients:
        """The open clients; only between lifespan start-up and shutdown."""
        if self._clients is None:
            raise RuntimeError("the gateway's clients are not open (lifespan not started)")
        return self._clients

    @property
    def stubs(self) -> ServiceStubs:
        """The stubs of the services."""
        return self.clients.stubs

    @property
    def wechat(self) -> WechatOAuth:
        """The WeChat OAuth client."""
        return self.clients.wechat

    @property
    def sessions(self) -> SessionRevocations:
        """The session revocation store."""
        return self.clients.sessions

    def open(self, clients: Clients) -> None:
        """Make ``clients`` available to requests (lifespan start-up)."""
        self._clients = clients

    def close(self) -> None:
        """Forget the clients (lifespan shutdown; the lifespan closes them)."""
        self._clients = None


def runtime_of(request: Request) -> Runtime:
    """The app's :class:`Runtime` (for routes that read it without a dependency)."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, Runtime):
        raise TypeError("app.state.runtime is not set; build the app with create_app")
    return runtime


def principal_of(request: Request) -> Principal:
    """The caller, as authenticated by the login-check middleware."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        # A logged-in route reached without the middleware's check: a wiring bug.
        raise RuntimeError(f"{request.url.path} is not behind the login check")
    return principal


async def get_runtime(request: Request) -> Runtime:
    """The app's :class:`Runtime`.

    The dependencies here are ``async`` although they never await: FastAPI runs a plain
    ``def`` dependency in its thread pool, a thread round trip per request and dependency
    that costs more CPU than the gateway's whole route body.
    """
    return runtime_of(request)


async def get_principal(request: Request) -> Principal:
    """The caller, as authenticated by the login-check middleware."""
    return principal_of(request)


async def user_agent(request: Request) -> str:
    """The User-Agent header, empty when absent (tokens are bound to it)."""
    return request.headers.get("user-agent", "")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
UserAgentDep = Annotated[str, Depends(user_agent)]

# Declared on routes for the OpenAPI schema (the "Authorize" button of /docs); the login
# middleware and the refresh route do the actual checking.
access_token_scheme = HTTPBearer(
    scheme_name="accessToken",
    description="The x-jwt-token header received at login or refresh.",
    auto_error=False,
)
LOGGED_IN: Final = [Security(access_token_scheme)]
"""``dependencies`` of a logged-in route or router (documents the access token)."""
NOT_LOGGED_IN: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "Not logged in, token invalid or expired. Empty body."}
}
"""``responses`` of a logged-in route or router: the login check's 401."""
refresh_token_scheme = HTTPBearer(
    scheme_name="refreshToken",
    description="The x-refresh-token header received at login or refresh.",
    auto_error=False,
)
