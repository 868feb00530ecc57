"""Authentication of ``SmsService`` callers: static tokens or JWTs in gRPC metadata.

Callers send ``authorization: Bearer <token>``. A token is either

- a **static token** registered for a caller in the settings (``callers``), compared with
  :func:`hmac.compare_digest` against every registered token; or
- a **JWT** signed with HS256 under ``caller_jwt_key`` (only HS256 is accepted), with the
  claims ``sub`` (caller name), ``aud`` (``caller_jwt_audience``), ``exp`` (required),
  ``tpl`` (list of template ids the caller may send, ``*`` for all) and optionally
  ``admin`` (may list every caller's records). :func:`issue_caller_token` makes one.

A missing, unknown, forged or expired token is ``UNAUTHENTICATED`` (``SMS_UNAUTHENTICATED``).
Whether the caller may use a template is checked by the use case (``PERMISSION_DENIED``).

:class:`CallerAuthInterceptor` applies this to ``SmsService`` methods only: ``CodeService`` is
an internal RPC without caller tokens, and its SMS go through the use case in process. The
authenticated :class:`~services.sms.domain.Caller` is available to the handler through
:func:`current_caller`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt

from kit.errors import AppError
from kit.grpcx.errors import Handler, ServerInterceptorBase, abort_with
from services.sms.domain import Caller
from services.sms.errors import SmsReason, SmsUnauthenticated

logger = logging.getLogger(__name__)

JWT_ALGORITHM = "HS256"
_caller: ContextVar[Caller | None] = ContextVar("sms_caller", default=None)


def current_caller() -> Caller:
    """The caller authenticated for the current call."""
    caller = _caller.get()
    if caller is None:
        raise SmsUnauthenticated(SmsReason.UNAUTHENTICATED, "caller not authenticated")
    return caller


@dataclass(frozen=True)
class StaticCaller:
    """A caller registered with a static token."""

    caller: Caller
    token: str = field(repr=False)


def issue_caller_token(
    key: str,
    caller: str,
    templates: Iterable[str],
    *,
    ttl_s: float,
    audience: str = "webook-sms",
    admin: bool = False,
    now: float | None = None,
) -> str:
    """A caller JWT valid for ``ttl_s`` seconds (``python -m services.sms issue-token``)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": caller,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(ttl_s),
        "tpl": sorted(set(templates)),
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


class CallerAuthenticator:
    """Turns an ``authorization`` metadata value into a :class:`Caller`."""

    def __init__(
        self,
        static_callers: Iterable[StaticCaller],
        *,
        jwt_key: str,
        audience: str,
        reserved_names: Iterable[str] = ("code",),
    ) -> None:
        self._static = [s for s in static_callers if s.token]
        self._jwt_key = jwt_key
        self._audience = audience
        self._reserved = frozenset(reserved_names)

    @staticmethod
    def _refuse(why: str) -> SmsUnauthenticated:
        logger.info("sms caller refused", extra={"why": why})
        return SmsUnauthenticated(SmsReason.UNAUTHENTICATED, "missing or invalid caller token")

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller a ``Bearer`` token stands for; :class:`SmsUnauthenticated` otherwise."""
        if not authorization:
            raise self._refuse("no authorization metadata")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse("not a bearer token")
        if token.count(".") == 2:
            return self._from_jwt(token)
        return self._from_static(token)

    def _from_static(self, token: str) -> Caller:
        found: Caller | None = None
        presented = token.encode()
        # Compare with every token so the time taken does not tell which one nearly matched.
        for entry in self._static:
            if hmac.compare_digest(presented, entry.token.encode()):
                found = entry.caller
        if found is None:
            raise self._refuse("unknown static token")
        return found

    def _from_jwt(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise self._refuse(f"jwt rejected: {type(exc).__name__}") from exc
        name = claims.get("sub")
        templates = claims.get("tpl", [])
        if (
            not isinstance(name, str)
            or not name
            or name in self._reserved
            or not isinstance(templates, list)
            or not all(isinstance(t, str) for t in templates)
        ):
            raise self._refuse("jwt claims malformed")
        return Caller(name, frozenset(templates), admin=claims.get("admin") is True)


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


Behaviour = Callable[..., Any]


class CallerAuthInterceptor(ServerInterceptorBase):
    """Authenticates calls to methods under ``prefix`` (unary-unary) and binds the caller."""

    def __init__(
        self, authenticator: CallerAuthenticator, prefix: str = "/webook.sms.v1.SmsService/"
    ) -> None:
        self._authenticator = authenticator
        self._prefix = prefix

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Wrap the handler of an ``SmsService`` method with the caller check."""
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not handler_call_details.method.startswith(self._prefix)
        ):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, behaviour: Behaviour) -> Behaviour:
        authenticator = self._authenticator

        async def authenticated(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                caller = authenticator.authenticate(_authorization(context))
            except AppError as exc:
                # This wrapper runs outside the error-mapping interceptor: abort here.
                await abort_with(context, exc)
                raise
            token = _caller.set(caller)
            try:
                return await behaviour(request, context)
            finally:
                _caller.reset(token)

        return authenticated
