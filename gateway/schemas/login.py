"""Models of the SMS code login routes (``/users/login_sms/...``).

Phones are validated and normalised to E.164 here (:func:`kit.phone.normalize_phone`, numbers
without ``+`` read as mainland China), so a bad number is refused at the edge with code 4 and
every spelling of one number (``13900000003``, ``+86 139 0000 0003``) reaches the services
as the same string. The services apply the same rule (and the sms service the allowed
countries): it holds for direct gRPC callers too.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field

from gateway.schemas import RequestModel
from kit.phone import MAX_PHONE_INPUT_CHARS, InvalidPhoneNumber, normalize_phone

MAX_PHONE_CHARS: Final = MAX_PHONE_INPUT_CHARS
CODE_DIGITS: Final = 6
_CODE_SHAPE: Final = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _check_phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(f"invalid phone number: {exc}") from exc


def _check_code(value: str) -> str:
    if not _CODE_SHAPE.fullmatch(value):
        raise ValueError(f"code must be {CODE_DIGITS} digits")
    return value


# The constraint comes before the strip so that it stays a string constraint (checked after
# the strip, reported as "string_too_long").
Phone = Annotated[
    str,
    Field(
        max_length=MAX_PHONE_CHARS,
        description="Mobile number: mainland China without +, others with + and country code.",
    ),
    BeforeValidator(_strip),
    AfterValidator(_check_phone),
]
Code = Annotated[
    str,
    BeforeValidator(_strip),
    Field(description=f"The {CODE_DIGITS}-digit code received by SMS."),
    AfterValidator(_check_code),
]


class SendLoginCodeRequest(RequestModel):
    """``POST /users/login_sms/code/send``."""

    phone: Phone


class SmsLoginRequest(RequestModel):
    """``POST /users/login_sms``."""

    phone: Phone
    code: Code
