"""Every per-request concern of the gateway in one ASGI layer, with one ``send`` wrapper.

Each concern keeps its own module and is a plain object or function there; this layer, the
only composition of them (built from settings by
:meth:`gateway.middleware.edge.Edge.layer`), runs them around the app, outermost first:

1. trace context (:class:`~gateway.middleware.trace_context.TraceContexts`): only while no
   span is recorded;
2. CORS (:class:`~gateway.middleware.cors.CorsPolicy`): a preflight is answered here, before
   anything counts, logs or login-checks it; every other answer gets the CORS headers;
3. request id, access log, metrics (:class:`~gateway.middleware.request_id.RequestIds`,
   :func:`~gateway.middleware.access_log.log_request`,
   :func:`~gateway.middleware.metrics.record_request`): every answer below, refusals and
   500s included, carries the id and is logged and counted, an envelope answer by its code
   too (noted where the envelope is built: :func:`gateway.envelope.open_answer`); while
   the process drains (:class:`~gateway.readiness.Readiness`), every answer carries
   ``Connection: close``;
4. concurrency cap, 503 (:class:`~gateway.middleware.concurrency.ConcurrencyLimit`);
5. body size, 413 (:class:`~gateway.middleware.body_limit.BodyLimit`: a declared length
   here, the bytes read through the one ``receive`` wrapper; a
   :class:`~gateway.middleware.body_limit.RequestBodyTooLarge` that the app does not answer
   itself is answered 413 here);
6. rate limits per IP and global, 429 (:class:`~gateway.middleware.ratelimit.RateLimits`);
7. unhandled errors (:func:`~gateway.middleware.errors.log_unhandled`): an exception from
   below is logged (with the request id) and answered with the 500 envelope, never a
   traceback;
8. login check, 401 (:class:`~gateway.middleware.login.LoginCheck`);
9. rate limits per user, 429 (they need the user the login check found).

A concern given as None is off. The one ``send`` wrapper (:class:`_Answer`) records the
status for the access log and metrics, remembers whether the answer started (for the
unhandled-error concern) and adds the request id and CORS headers to the answer's start,
so the hot path has one coroutine frame and one ``send`` wrapper for all the concerns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.envelope import close_answer, open_answer
from gateway.errors import unauthorized_response, unexpected_error_response
from gateway.middleware.access_log import log_request
from gateway.middleware.body_limit import BodyLimit, body_too_large
from gateway.middleware.concurrency import ConcurrencyLimit
from gateway.middleware.cors import CorsPolicy
from gateway.middleware.errors import log_unhandled
from gateway.middleware.login import LoginCheck
from gateway.middleware.metrics import record_request
from gateway.middleware.ratelimit import RateLimits, Rule
from gateway.middleware.request_id import RequestIds
from gateway.middleware.route_template import RouteTemplates
from gateway.middleware.trace_context import TraceContexts
from gateway.readiness import Readiness


class _Answer:
    """The ``send`` of everything inside: status, started, request id, CORS headers and,
    while draining, ``Connection: close``."""

    __slots__ = (
        "_send",
        "allowed",
        "close",
        "cors",
        "ids",
        "origin",
        "request_id",
        "started",
        "status",
    )

    def __init__(
        self,
        send: Send,
        ids: RequestIds,
        request_id: str,
        cors: CorsPolicy | None,
        origin: str | None,
        allowed: bool,
        close: bool,
    ) -> None:
        self._send = send
        self.ids = ids
        self.request_id = request_id
        self.cors = cors
        self.origin = origin
        self.allowed = allowed
        self.close = close
        self.started = False
        # Stays 500 if the app raises before answering (the server then answers 500).
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            # In the order the separate layers had: the id (inner), then CORS (outer).
            self.ids.add_header(message, self.request_id)
            if self.cors is not None:
                self.cors.decorate(message, self.origin, self.allowed)
            if self.close:
                # The server (h11) then closes the connection after this answer.
                MutableHeaders(scope=message)["connection"] = "close"
        await self._send(message)


class GatewayLayer:
    """The gateway's per-request concerns in one layer; see the module docstring.

    Args:
        app: the app inside.
        routes: route templates for the metric and log labels.
        request_ids: the request-id concern.
        trace_contexts, cors, concurrency, body_limit, login: the concerns (None: off).
        readiness: the process's readiness; while it drains, answers close their
            connection (None: never).
        limits: the rate limiters, with ``ip_rules`` checked before the login check and
            ``user_rules`` after it (:meth:`RateLimits.rules_for` groups follow the live
            rule table).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTemplates,
        request_ids: RequestIds,
        trace_contexts: TraceContexts | None = None,
        cors: CorsPolicy | None = None,
        concurrency: ConcurrencyLimit | None = None,
        body_limit: BodyLimit | None = None,
        limits: RateLimits | None = None,
        ip_rules: Sequence[Rule] = (),
        user_rules: Sequence[Rule] = (),
        login: LoginCheck | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        if (ip_rules or user_rules) and limits is None:
            raise ValueError("rate-limit rules need their RateLimits")
        self.app = app
        self.routes = routes
        self.request_ids = request_ids
        self.trace_contexts = trace_contexts
        self.cors = cors
        self.concurrency = concurrency
        self.body_limit = body_limit
        self.limits = limits
        # Kept as given: RateLimits hands out RuleGroups whose rules follow a live swap.
        self.ip_rules = ip_rules
        self.user_rules = user_rules
        self.login = login
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traced = None if self.trace_contexts is None else self.trace_contexts.enter(scope)
        try:
            cors = self.cors
            origin, allowed = (None, False) if cors is None else cors.allowed_origin(scope)
            if cors is not None and origin is not None and cors.is_preflight(scope, origin):
                await cors.preflight_response(origin, allowed)(scope, receive, send)
                return
            ids = self.request_ids
            request_id, id_tokens = ids.enter(scope)
            readiness = self.readiness
            code_token = open_answer()
            started = time.perf_counter()
            answer = _Answer(
                send,
                ids,
                request_id,
                cors,
                origin,
                allowed,
                readiness is not None and readiness.draining,
            )
            try:
                await self._guarded(scope, receive, answer)
            finally:
                elapsed = time.perf_counter() - started
                code = close_answer(code_token)
                try:
                    record_request(self.routes, scope, answer.status, elapsed, code)
                    log_request(self.routes, scope, answer.status, elapsed)
                finally:
                    ids.leave(id_tokens)
        finally:
            if traced is not None:
                TraceContexts.leave(traced)

    async def _guarded(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        """Concerns 4-9: the guards, unhandled errors, the login check, the app."""
        concurrency = self.concurrency
        if concurrency is not None and scope["path"] not in concurrency.exempt_paths:
            if not concurrency.enter():
                await concurrency.refusal()(scope, receive, answer)
                return
        else:
            concurrency = None
        try:
            body_limit = self.body_limit
            if body_limit is not None:
                if body_limit.declared_too_large(scope):
                    await body_limit.refusal()(scope, receive, answer)
                    return
                receive = body_limit.counting(receive)
            if self.ip_rules:
                assert self.limits is not None
                refusal = await self.limits.check(scope, self.ip_rules)
                if refusal is not None:
                    await refusal.response()(scope, receive, answer)
                    return
            try:
                await self._logged_in(scope, receive, answer)
            except Exception as exc:
                if answer.started:
                    log_unhandled(scope)
                    raise  # too late for a clean answer: the server aborts the connection
                if body_limit is not None and body_too_large(exc):
                    # A raw ASGI app let the limit's exception through: still a 413.
                    await body_limit.refusal()(scope, receive, answer)
                    return
                log_unhandled(scope)
                await unexpected_error_response()(scope, receive, answer)
        finally:
            if concurrency is not None:
                concurrency.leave()

    async def _logged_in(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        """Concerns 8-9: the login check and the per-user rate limits, then the app."""
        login = self.login
        if login is None or scope["path"] in login.public_paths:
            await self._app(scope, receive, answer)
            return
        principal = await login.authenticate(scope)
        if principal is None:
            await unauthorized_response()(scope, receive, answer)
            return
        tokens = login.enter(scope, principal)
        try:
            await self._app(scope, receive, answer)
        finally:
            login.leave(tokens)

    async def _app(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        if self.user_rules:
            assert self.limits is not None
            refusal = await self.limits.check(scope, self.user_rules)
            if refusal is not None:
                await refusal.response()(scope, receive, answer)
                return
        await self.app(scope, receive, answer)
