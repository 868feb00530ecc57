"""The request body size limit: HTTP 413 beyond ``max_bytes``, chunked bodies included.

- A ``Content-Length`` above the limit is refused before the app runs (nothing is read).
- Otherwise the bytes are counted as the app reads them (``http.request`` messages), so a
  chunked body without ``Content-Length``, or one longer than it claimed, is stopped as
  soon as it crosses the limit: the app's next ``receive()`` raises
  :class:`RequestBodyTooLarge`, never handing it more than ``max_bytes``.

:class:`RequestBodyTooLarge` is a Starlette ``HTTPException(413)``, so in a FastAPI or
Starlette app the exception handlers answer it like any other HTTP error, and the concerns
around see a 413; if it escapes the app (a raw ASGI app),
:class:`~gateway.middleware.gateway_layer.GatewayLayer` answers
``{"code": 413, "msg": ..., "data": null}`` itself (unless a response had started, when
there is nothing left to do but let the server drop the connection). Either way the
request is counted once in ``webook_http_rejected_total{reason="body_too_large"}``.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from gateway.envelope import note_envelope_code
from gateway.middleware.edge_metrics import HTTP_REJECTED

_MESSAGE: Final = "request body too large"
_CODE: Final = 413
_BODY: Final = json.dumps({"code": _CODE, "msg": _MESSAGE, "data": None}).encode()


class RequestBodyTooLarge(HTTPException):
    """The request body is longer than the configured limit."""

    def __init__(self, max_bytes: int) -> None:
        """Say what the limit was."""
        super().__init__(status_code=413, detail=_MESSAGE)
        self.max_bytes = max_bytes


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # bytes: ASCII digits only
    return None


def body_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is, or is a group made only of, :class:`RequestBodyTooLarge`."""
    if isinstance(exc, BaseExceptionGroup):
        return all(body_too_large(inner) for inner in exc.exceptions)
    return isinstance(exc, RequestBodyTooLarge)


class BodyLimit:
    """The concern as a plain object: a declared length checked before the app runs, the
    bytes read counted by a ``receive`` wrapper (:meth:`counting`)."""

    __slots__ = ("_rejected", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._rejected = HTTP_REJECTED.labels("body_too_large")

    def declared_too_large(self, scope: Scope) -> bool:
        """Whether ``Content-Length`` is above the limit (then counted as rejected)."""
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            self._rejected.inc()
            return True
        return False

    def counting(self, receive: Receive) -> Receive:
        """``receive``, raising :class:`RequestBodyTooLarge` once the body crosses the limit."""
        max_bytes = self.max_bytes
        rejected = self._rejected
        received = 0
        exceeded = False

        async def receive_counting() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise RequestBodyTooLarge(max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    exceeded = True
                    rejected.inc()
                    raise RequestBodyTooLarge(max_bytes)
            return message

        return receive_counting

    @staticmethod
    def refusal() -> Response:
        """The 413 answer."""
        note_envelope_code(_CODE)
        return Response(_BODY, status_code=413, media_type="application/json")
