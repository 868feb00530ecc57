"""Turns an exception no handler answered into HTTP 500 with the envelope, and logs it.

It sits inside CORS, access log and metrics, so those still see (and decorate) the 500;
Starlette's own last-resort handler is outside every middleware and would not.
:func:`log_unhandled` and :func:`gateway.errors.unexpected_error_response` are the concern
(the gateway runs it in :class:`~gateway.middleware.gateway_layer.GatewayLayer`);
:class:`UnhandledErrorMiddleware` is it alone as an ASGI layer.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import unexpected_error_response

logger = logging.getLogger(__name__)


def log_unhandled(scope: Scope) -> None:
    """Log the exception being handled (call it from an ``except`` block).

    The caller then answers :func:`gateway.errors.unexpected_error_response`, or re-raises
    when the response had already started (too late for a clean answer: the server aborts
    the connection).
    """
    logger.exception(
        "unhandled error", extra={"http_method": scope["method"], "path": scope["path"]}
    )


class UnhandledErrorMiddleware:
    """The last line of defence: no traceback or internal detail reaches a client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_and_track(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_track)
        except Exception:
            log_unhandled(scope)
            if response_started:
                raise
            await unexpected_error_response()(scope, receive, send)
