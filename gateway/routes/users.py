"""``/users``: signup, password login, profile, edit, token refresh, logout.

SMS code login (``/users/login_sms``) lives in :mod:`gateway.routes.sms_login`.

Login and refresh answer with the tokens in the ``x-jwt-token`` and ``x-refresh-token``
headers. Refresh rotates: the presented refresh token's session is revoked and a new one
begins, so a refresh token works once.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

import grpc
from fastapi import APIRouter, Response, Security
from fastapi.security import HTTPAuthorizationCredentials

from gateway import presenters
from gateway.auth.login import TOKEN_RESPONSES, counted_login, set_token_headers
from gateway.auth.tokens import InvalidToken, TokenType
from gateway.deps import LOGGED_IN, PrincipalDep, RuntimeDep, UserAgentDep, refresh_token_scheme
from gateway.envelope import Ack
from gateway.errors import GatewayReason
from gateway.schemas.users import EditProfileRequest, LoginRequest, ProfileView, SignupRequest
from kit.errors import Unauthenticated
from kit.grpcx.errors import app_error_from_rpc
from webook.user.v1 import user_pb2

_UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "Not logged in, token invalid or expired, or session revoked. Empty body."}
}

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/users", tags=["users"])


def _session_ended() -> Unauthenticated:
    return Unauthenticated(GatewayReason.SESSION_INVALID, "not logged in")


@router.post("/signup", summary="Create an account with email and password")
async def signup(body: SignupRequest, runtime: RuntimeDep) -> Ack:
    """Register; a duplicate email answers code 401003."""
    await runtime.stubs.user.Signup(
        user_pb2.SignupRequest(email=body.email, password=body.password),
        timeout=runtime.grpc_timeout,
    )
    return Ack()


@router.post("/login", summary="Log in with email and password", responses=TOKEN_RESPONSES)
async def login(
    body: LoginRequest, response: Response, runtime: RuntimeDep, user_agent: UserAgentDep
) -> Ack:
    """Check the credentials and start a session; wrong ones answer code 401002.

    After repeated wrong passwords the user service locks the account's logins for a while
    (the same for unknown emails): that answers code 4 with its message ("too many failed
    logins for this account; try again in N minutes").
    """
    async with counted_login("password"):
        try:
            reply = await runtime.stubs.user.Login(
                user_pb2.LoginRequest(email=body.email, password=body.password),
                timeout=runtime.grpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            error = app_error_from_rpc(exc)
            # An unknown email must look exactly like a wrong password (no account probing).
            if error.reason == user_pb2.ErrorReason.Name(user_pb2.USER_NOT_FOUND):
                raise Unauthenticated(
                    user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_CREDENTIALS),
                    "wrong email or password",
                ) from exc
            raise
        set_token_headers(response, runtime.tokens.issue(reply.user.id, user_agent))
    logger.info("logged in", extra={"method": "password", "uid": reply.user.id})
    return Ack()


@router.post(
    "/refresh_token",
    summary="Exchange the refresh token for a new token pair",
    responses={**TOKEN_RESPONSES, **_UNAUTHORIZED},
)
async def refresh_token(
    response: Response,
    runtime: RuntimeDep,
    user_agent: UserAgentDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(refresh_token_scheme)],
) -> Ack:
    """Send the refresh token as ``Authorization: Bearer``; it is consumed (rotation)."""
    if credentials is None:
        raise _session_ended()
    try:
        claims = runtime.tokens.verify(credentials.credentials, TokenType.REFRESH, user_agent)
    except InvalidToken as exc:
        raise _session_ended() from exc
    # The user's revocation mark (all sessions revoked) refuses a refresh token as it does
    # an access token; the rotation below then revokes the session itself.
    if not await runtime.sessions.is_active(
        claims.ssid, issued_at=claims.iat, uid=claims.uid
    ) or not await runtime.sessions.revoke_if_active(claims.ssid):
        raise _session_ended()
    set_token_headers(response, runtime.tokens.issue(claims.uid, user_agent))
    return Ack()


@router.post("/logout", summary="End the session", dependencies=LOGGED_IN, responses=_UNAUTHORIZED)
async def logout(principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Revoke the session: its access and refresh tokens stop working at once."""
    await runtime.sessions.revoke(principal.ssid)
    return Ack()


@router.get(
    "/profile",
    summary="The caller's profile (bare object, no envelope)",
    dependencies=LOGGED_IN,
    responses=_UNAUTHORIZED,
)
async def profile(principal: PrincipalDep, runtime: RuntimeDep) -> ProfileView:
    """Email, phone, nickname, birthday and self-description of the logged-in user."""
    reply = await runtime.stubs.user.Profile(
        user_pb2.ProfileRequest(id=principal.uid), timeout=runtime.grpc_timeout
    )
    return presenters.profile_view(reply.user)


@router.post(
    "/edit",
    summary="Update nickname, birthday and self-description",
    dependencies=LOGGED_IN,
    responses=_UNAUTHORIZED,
)
async def edit(body: EditProfileRequest, principal: PrincipalDep, runtime: RuntimeDep) -> Ack:
    """Change the non-sensitive profile fields."""
    await runtime.stubs.user.UpdateNonSensitiveInfo(
        user_pb2.UpdateNonSensitiveInfoRequest(
            id=principal.uid,
            nickname=body.nickname,
            birthday=body.birthday,
            about_me=body.about_me,
        ),
        timeout=runtime.grpc_timeout,
    )
    return Ack()
