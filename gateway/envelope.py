"""The response envelope ``{"code": int, "msg": str, "data": any}`` and its codes.

Most routes answer HTTP 200 with this envelope; ``code == 0`` means success, any other code
is a business failure whose ``msg`` is fit to show to a person.

**The code of the answer, for metrics.** Every answer is HTTP 200 whether it succeeded or
not, so the envelope's code is what tells a system error (5) from a success. It is noted
where the envelope is built, never read back from the body: :class:`Result` notes its code
when it is made, :func:`envelope_response` (every error answer) and the edge's refusals
call :func:`note_envelope_code`, and a non-envelope answer built after an envelope (the
empty 401) clears it. The note lives in a context variable that
:class:`~gateway.middleware.gateway_layer.GatewayLayer` opens for each request
(:func:`open_answer`) and reads once the answer is sent (:func:`close_answer`), to count
``webook_http_envelope_codes_total`` (:mod:`gateway.middleware.metrics`). The variable, not
the request scope, because the places that build envelopes (a route's return value, an
exception handler) are not handed the scope; they all run in the request's task, whose
context the layer's is.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Final, Generic, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel

DataT = TypeVar("DataT")

CODE_OK: Final = 0
CODE_BAD_INPUT: Final = 4
CODE_SYSTEM_ERROR: Final = 5
CODE_WRONG_CREDENTIALS: Final = 401002
CODE_EMAIL_TAKEN: Final = 401003

MSG_OK: Final = "OK"
MSG_SYSTEM_ERROR: Final = "system error"

# The code of the last envelope built for the request being answered (None: none yet).
_answer_code: ContextVar[int | None] = ContextVar("webook_envelope_code", default=None)


def note_envelope_code(code: int | None) -> None:
    """Record that the answer being built is an envelope with ``code`` (None: not one)."""
    _answer_code.set(code)


def open_answer() -> Token[int | None]:
    """Start noting the envelope code of a new request; pass the token to
    :func:`close_answer`."""
    return _answer_code.set(None)


def close_answer(token: Token[int | None]) -> int | None:
    """The code noted since :func:`open_answer` (None: not an envelope answer); resets."""
    code = _answer_code.get()
    _answer_code.reset(token)
    return code


class Result(BaseModel, Generic[DataT]):
    """The envelope every enveloped route answers with."""

    code: int = CODE_OK
    msg: str = MSG_OK
    data: DataT | None = None

    def model_post_init(self, context: Any, /) -> None:
        """Note the code: a Result is built to be the answer (see the module docstring)."""
        _answer_code.set(self.code)


class Ack(Result[None]):
    """The envelope of a route that answers no data."""


def envelope_response(
    code: int, msg: str, data: Any = None, *, status_code: int = 200
) -> JSONResponse:
    """A JSON response carrying the envelope (used where no route model applies: errors)."""
    _answer_code.set(code)
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status_code)
