"""Models of the ``/users`` routes.

Field names are the wire names of the original API (``confirmPassword``, ``aboutMe``, the
capitalised profile keys). Unknown fields are ignored. Each rule fails with a message that
names the problem; :func:`gateway.errors.describe_validation_errors` passes it on as the
envelope's ``msg``.

Nickname and about-me are plain text: markup (an HTML tag, comment or declaration, or a
character reference) is refused here with code 4, by the same rule the user service enforces
for every caller (``services/user/domain.py``).
"""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Self

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, model_validator

from gateway.schemas import RequestModel

MAX_EMAIL_CHARS: Final = 255
# bcrypt ignores everything past 72 bytes; longer passwords would silently be truncated.
MAX_PASSWORD_BYTES: Final = 72
MIN_PASSWORD_CHARS: Final = 8
MAX_NICKNAME_CHARS: Final = 64
MAX_ABOUT_ME_CHARS: Final = 1024

WEAK_PASSWORD_MESSAGE: Final = (
    f"password must be at least {MIN_PASSWORD_CHARS} characters and contain a letter, "
    "a digit and a special character"
)
_DATE_FORMAT: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The user service's rule, repeated so the edge refuses before a call (the gateway does not
# import services): "<" followed by a letter, "/", "!" or "?", or a character reference.
_MARKUP: Final = re.compile(r"<[A-Za-z/!?]|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")


def _plain_text(field: str) -> AfterValidator:
    def check(value: str) -> str:
        if _MARKUP.search(value):
            raise ValueError(
                f"{field} must be plain text, without HTML tags or character references"
            )
        return value

    return AfterValidator(check)


def _check_email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError("invalid email") from exc
    return value


def _check_password_size(value: str) -> str:
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    return value


def _check_password_strength(value: str) -> str:
    strong = (
        len(value) >= MIN_PASSWORD_CHARS
        and any(ch.isalpha() for ch in value)
        and any(ch in string.digits for ch in value)
        and any(not ch.isalnum() and not ch.isspace() for ch in value)
    )
    if not strong:
        raise ValueError(WEAK_PASSWORD_MESSAGE)
    return value


def latest_birthday() -> date:
    """The latest acceptable birthday: today somewhere on Earth (UTC today + 1 day)."""
    return datetime.now(UTC).date() + timedelta(days=1)


def _check_birthday(value: str) -> str:
    if value == "":
        return value
    if not _DATE_FORMAT.fullmatch(value):
        raise ValueError("birthday must be a date in YYYY-MM-DD format")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("birthday is not a real calendar date") from exc
    if day > latest_birthday():
        raise ValueError("birthday cannot be in the future")
    return value


Email = Annotated[str, Field(max_length=MAX_EMAIL_CHARS), AfterValidator(_check_email)]
LoginEmail = Annotated[str, Field(max_length=MAX_EMAIL_CHARS)]
NewPassword = Annotated[
    str, AfterValidator(_check_password_size), AfterValidator(_check_password_strength)
]
Password = Annotated[str, AfterValidator(_check_password_size)]


class SignupRequest(RequestModel):
    """``POST /users/signup``."""

    email: Email = Field(description="Must look like an email address.")
    password: NewPassword = Field(description=WEAK_PASSWORD_MESSAGE.capitalize() + ".")
    confirm_password: Password = Field(alias="confirmPassword")

    @model_validator(mode="after")
    def _passwords_match(self) -> Self:
        if self.password != self.confirm_password:
            raise ValueError("the two passwords do not match")
        return self


class LoginRequest(RequestModel):
    """``POST /users/login``."""

    email: LoginEmail
    password: Password


class EditProfileRequest(RequestModel):
    """``POST /users/edit``."""

    nickname: Annotated[str, Field(max_length=MAX_NICKNAME_CHARS), _plain_text("nickname")]
    birthday: Annotated[str, AfterValidator(_check_birthday)] = Field(
        description='"YYYY-MM-DD", not later than today anywhere on Earth; "" leaves it unset.'
    )
    about_me: Annotated[str, Field(max_length=MAX_ABOUT_ME_CHARS), _plain_text("aboutMe")] = Field(
        alias="aboutMe"
    )


class ProfileView(BaseModel):
    """``GET /users/profile``: a bare object with capitalised keys, as existing clients read."""

    Email: str
    Phone: str
    Nickname: str
    Birthday: str = Field(description='"YYYY-MM-DD" or "" when unset.')
    AboutMe: str
