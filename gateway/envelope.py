"""The response envelope ``{"code": int, "msg": str, "data": any}`` and its codes.

Most routes answer HTTP 200 with this envelope; ``code == 0`` means success, any other code
is a business failure whose ``msg`` is fit to show to a person.
"""

from __future__ import annotations

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


class Result(BaseModel, Generic[DataT]):
    """The envelope every enveloped route answers with."""

    code: int = CODE_OK
    msg: str = MSG_OK
    data: DataT | None = None


class Ack(Result[None]):
    """The envelope of a route that answers no data."""


def envelope_response(
    code: int, msg: str, data: Any = None, *, status_code: int = 200
) -> JSONResponse:
    """A JSON response carrying the envelope (used where no route model applies: errors)."""
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status_code)
