"""Models of the SMS code login routes (``/users/login_sms/...``).

The edge checks only shapes; the sms and user services own the phone rules (mainland
``1[3-9]`` + 9 digits or E.164). Surrounding whitespace is stripped so that the number sent
a code and the number logged in are the same string (the user service stores it as sent).
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_PHONE_CHARS: Final = 20
CODE_DIGITS: Final = 6
_PHONE_SHAPE: Final = re.compile(r"\+?[0-9]+")
_CODE_SHAPE: Final = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _check_phone(value: str) -> str:
    if not _PHONE_SHAPE.fullmatch(value):
        raise ValueError("invalid phone number")
    return value


def _check_code(value: str) -> str:
    if not _CODE_SHAPE.fullmatch(value):
        raise ValueError(f"code must be {CODE_DIGITS} digits")
    return value


# The constraint comes before the strip so that it stays a string constraint (checked after
# the strip, reported as "string_too_long").
Phone = Annotated[
    str,
    Field(max_length=MAX_PHONE_CHARS, description="Mainland number or E.164 (+...)."),
    BeforeValidator(_strip),
    AfterValidator(_check_phone),
]
Code = Annotated[
    str,
    BeforeValidator(_strip),
    Field(description=f"The {CODE_DIGITS}-digit code received by SMS."),
    AfterValidator(_check_code),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SendLoginCodeRequest(_Request):
    """``POST /users/login_sms/code/send``."""

    phone: Phone


class SmsLoginRequest(_Request):
    """``POST /users/login_sms``."""

    phone: Phone
    code: Code
