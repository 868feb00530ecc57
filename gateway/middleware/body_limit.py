"""The request body size limit: HTTP 413 beyond ``max_bytes``, chunked bodies included.

- A ``Content-Length`` above the limit is refused before the app runs (nothing is read).
- Otherwise the bytes are counted as the app reads them (``http.request`` messages), so a
  chunked body without ``Content-Length``, or one longer than it claimed, is stopped as
  soon as it crosses the limit: the app's next ``receive()`` raises
  :class:`RequestBodyTooLarge`, never handing it more than ``max_bytes``.

:class:`RequestBodyTooLarge` is a Starlette ``HTTPException(413)``, so in a FastAPI or
Starlette app the exception handlers answer it like any other HTTP error, and the layers
between see a 413; if it reaches this middleware instead, the middleware answers
``{"code": 413, "msg": ..., "data": null}`` itself (unless a response had started, when
there is nothing left to do but let the server drop the connection). Either way the
request is counted once in ``webook_http_rejected_total{reason="body_too_large"}``.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.middleware.edge_metrics import HTTP_REJECTED

_MESSAGE: Final = "request body too large"
_BODY: Final = json.dumps({"code": 413, "msg": _MESSAGE, "data": None}).encode()


class RequestBodyTooLarge(HTTPException):
    """The request body is longer than the configured limit."""

    def __init__(self, max_bytes: int) -> None:
        """Say what the limit was."""
        super().__init__(status_code=413, detail=_MESSAGE)
        self.max_bytes = max_bytes


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


def _only_body_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is, or is a group made only of, :class:`RequestBodyTooLarge`."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_body_too_large(inner) for inner in exc.exceptions)
    return isinstance(exc, RequestBodyTooLarge)


class BodyLimitMiddleware:
    """Refuses request bodies longer than ``max_bytes``; see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes
        self._rejected = HTTP_REJECTED.labels("body_too_large")

    def _response(self) -> Response:
        return Response(_BODY, status_code=413, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            self._rejected.inc()
            await self._response()(scope, receive, send)
            return
        received = 0
        exceeded = False
        response_started = False

        async def receive_counting() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise RequestBodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    self._rejected.inc()
                    raise RequestBodyTooLarge(self.max_bytes)
            return message

        async def send_tracking(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_counting, send_tracking)
        except Exception as exc:
            if response_started or not _only_body_too_large(exc):
                raise
            await self._response()(scope, receive, send)
