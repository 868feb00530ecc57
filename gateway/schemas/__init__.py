"""Request and response models of the HTTP API: validation happens here, at the edge.

One set of input rules holds for every route (``docs/security.md``, "Input rules"):

- **strict types**: request bodies are :class:`RequestModel` subclasses, parsed in pydantic's
  strict mode: an integer is a JSON integer (not ``true``, ``"7"`` or ``7.0``), a boolean is
  ``true``/``false`` (not ``"off"`` or ``1``), a string is a JSON string;
- **integers in the URL** (path and query) are :data:`DecimalInt`: ASCII decimal digits with
  an optional sign, as the original Go backend's ``strconv.ParseInt(s, 10, 64)`` read them;
  no spaces, underscores, fractions or exponents;
- **ranges**: ids, cursors and counts travel to the services as protobuf ``int64``: every
  integer the gateway accepts for one is bounded by :data:`INT64_MAX` (and below by its own
  rule), so a larger number is refused as bad input (code 4) instead of failing to encode
  (HTTP 500); page sizes have their own small bounds;
- **text**: every string of a request body must be valid Unicode: a lone surrogate (which a
  JSON ``\\ud800`` escape can produce, and which no encoder accepts) is refused with a
  message naming the field (:func:`check_text`), before any other rule of the field runs.
  Query and path strings cannot hold one (the server decodes them with replacement), and a
  body that is not UTF-8 is refused as malformed (:mod:`gateway.errors`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)

# Go's ParseInt takes any number of leading zeros; the bound only keeps the parse cheap.
MAX_DECIMAL_CHARS: Final = 32
_DECIMAL: Final = re.compile(r"[+-]?[0-9]+")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _decimal_text(value: object) -> object:
    """A path or query value as an integer if it is written in decimal digits."""
    if isinstance(value, str):
        if len(value) > MAX_DECIMAL_CHARS or not _DECIMAL.fullmatch(value):
            raise PydanticCustomError("int_parsing", "Input should be a decimal integer")
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # a default, or a value set in code
    raise PydanticCustomError("int_type", "Input should be a valid integer")


DecimalInt = Annotated[int, BeforeValidator(_decimal_text)]
"""An integer of the URL (path or query): ``[+-]?[0-9]+``, nothing else (add the bounds)."""


def check_text(value: str, field: str) -> str:
    """``value`` if it is valid Unicode text, else ValueError naming ``field`` and where.

    Never echoes the text itself: the message is safe to log and to show.
    """
    found = _SURROGATE.search(value)
    if found is not None:
        raise ValueError(
            f"{field} is not valid text: it contains a lone surrogate "
            f"(U+{ord(found.group()):04X} at position {found.start()})"
        )
    return value


def _check_texts(value: Any, field: str) -> None:
    """:func:`check_text` on ``value`` and on every string inside its lists and objects."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_texts(item, f"{field}.{index}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_texts(key, field)
            _check_texts(item, f"{field}.{key}" if isinstance(key, str) else field)


class RequestModel(BaseModel):
    """Base of every request body: strict types, valid text, unknown fields ignored.

    The text check runs before each field's own validators, so no rule (a length in bytes,
    an email parser) ever sees a string it cannot encode.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _valid_text(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        field = cls.model_fields.get(name)
        wire_name = field.alias if field is not None and field.alias else name
        _check_texts(value, wire_name)
        return value
