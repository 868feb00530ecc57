"""The user domain: plain dataclasses and the validation rules of user input.

Nothing here knows about SQL, Redis, protobuf or gRPC. Every rule either returns the
normalised value or raises :class:`~services.user.errors.UserInvalidArgument` with a stable
reason, a message fit to show to a person and ``metadata["field"]``.

Choices the rules make:

- **Email** addresses are stripped, validated by ``email-validator`` (syntax only, no DNS)
  and then lower-cased *as a whole*, local part included: ``Alice@Example.com`` and
  ``alice@example.com`` are the same account, whatever case the person types at login.
- **Passwords** need at least 8 characters with a letter, a decimal digit and a special
  character (printable, neither letter, digit nor whitespace), and at most 72 UTF-8 bytes:
  bcrypt ignores everything after byte 72, so longer passwords are refused, never truncated.
- **Nicknames** are stripped; at most 64 characters, no control characters. **About me** is
  kept as sent; at most 1024 characters, no control characters except newline, carriage
  return and tab. Both are **plain text**: anything that looks like markup — an HTML tag,
  comment or declaration (``<b>``, ``</p>``, ``<!--``, ``<!DOCTYPE``, ``<?xml``) or a character
  reference (``&lt;``, ``&#60;``) — is refused, not stripped: silently changing what a person
  wrote is worse than telling them, and refusing keeps every stored profile plain text for
  each page and index that shows it. ``a < b``, ``I <3 you`` and ``Tom & Jerry`` are fine.
- **Birthdays** are ``YYYY-MM-DD`` real calendar dates from 1900-01-01 up to one day after
  the server's UTC date (the latest "today" anywhere on Earth); empty means unset.
- **Phones** are mobile numbers normalised to E.164 by :func:`kit.phone.normalize_phone`
  (read in mainland China when written without ``+``): ``13812345678``,
  ``+86 138 1234 5678`` and ``+8613812345678`` are one phone, one account.
- **WeChat ids** are stripped; the open id is required, both at most 128 characters without
  whitespace or control characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from email_validator import EmailNotValidError, validate_email

from kit.phone import InvalidPhoneNumber
from kit.phone import normalize_phone as e164_phone
from services.user.errors import Reason, UserInvalidArgument

EMAIL_MAX_CHARS = 255
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72
NICKNAME_MAX_CHARS = 64
ABOUT_ME_MAX_CHARS = 1024
BIRTHDAY_MIN = date(1900, 1, 1)
WECHAT_ID_MAX_CHARS = 128
MAX_IDS_PER_BATCH = 100

# What an HTML parser reads as markup: "<" directly followed by a letter (a tag), "/" (an end
# tag), "!" or "?" (comment, declaration, processing instruction); or a named, decimal or
# hexadecimal character reference (&lt; &#60; &#x3c;). "a < b" and "I <3 you" are text.
_MARKUP = re.compile(r"<[A-Za-z/!?]|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ABOUT_ME_CONTROLS_ALLOWED = frozenset("\n\r\t")


@dataclass(frozen=True, slots=True)
class WechatInfo:
    """A WeChat identity: ``open_id`` is unique per app, ``union_id`` per developer account."""

    open_id: str
    union_id: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A user as the rest of the system sees it (never with the password hash).

    ``None`` means "not set" for the optional identities and the birthday; times are
    milliseconds since the Unix epoch.
    """

    id: int
    email: str | None = None
    phone: str | None = None
    nickname: str = ""
    birthday: date | None = None
    about_me: str = ""
    wechat: WechatInfo | None = None
    ctime_ms: int = 0
    utime_ms: int = 0


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user about to be created through one of the three ways in (email, phone, WeChat)."""

    email: str | None = None
    password_hash: str | None = field(default=None, repr=False)
    phone: str | None = None
    wechat: WechatInfo | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user found by email together with the stored bcrypt hash (only for login)."""

    user: User
    password_hash: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoginThrottleRules:
    """Password guessing per account: ``max_failures`` wrong passwords within ``window_s``
    lock the account's password logins for ``lock_s``, doubling with each further lock up to
    ``max_lock_s``; locks are remembered ``memory_s`` after the last failure. A successful
    login forgets everything."""

    max_failures: int = 5
    window_s: float = 900.0
    lock_s: float = 60.0
    max_lock_s: float = 3600.0
    memory_s: float = 86_400.0


@dataclass(frozen=True, slots=True)
class ProfileEdit:
    """The non-sensitive fields an edit replaces; empty strings and ``None`` clear them."""

    nickname: str
    birthday: date | None
    about_me: str


def _invalid(reason: Reason, field_name: str, message: str, **limits: str) -> UserInvalidArgument:
    return UserInvalidArgument(reason, message, metadata={"field": field_name, **limits})


def normalize_email(raw: str) -> str:
    """The canonical (stripped, lower-cased) form of a syntactically valid email address."""
    candidate = raw.strip()
    if not candidate:
        raise _invalid(Reason.INVALID_EMAIL, "email", "email address is required")
    if len(candidate) > EMAIL_MAX_CHARS:
        # Checked before parsing so that a huge input costs nothing.
        raise _too_long_email()
    try:
        info = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _invalid(Reason.INVALID_EMAIL, "email", f"not a valid email address: {exc}") from exc
    normalized = info.normalized.lower()
    if len(normalized) > EMAIL_MAX_CHARS:
        raise _too_long_email()
    return normalized


def _too_long_email() -> UserInvalidArgument:
    return _invalid(
        Reason.INVALID_EMAIL,
        "email",
        f"email address must be at most {EMAIL_MAX_CHARS} characters",
        max_chars=str(EMAIL_MAX_CHARS),
    )


def password_fits_bcrypt(password: str) -> bool:
    """Whether bcrypt can hash ``password`` without silently ignoring part of it."""
    return len(password.encode("utf-8")) <= PASSWORD_MAX_BYTES


def check_password_strength(password: str) -> None:
    """Refuse passwords that are too weak or too long for bcrypt."""
    if not password_fits_bcrypt(password):
        raise _invalid(
            Reason.PASSWORD_TOO_LONG,
            "password",
            f"password must be at most {PASSWORD_MAX_BYTES} bytes "
            f"({PASSWORD_MAX_BYTES} ASCII characters, fewer with other characters)",
            max_bytes=str(PASSWORD_MAX_BYTES),
        )
    has_letter = any(c.isalpha() for c in password)
    has_digit = any(c.isdecimal() for c in password)
    has_special = any(c.isprintable() and not c.isalnum() and not c.isspace() for c in password)
    if len(password) < PASSWORD_MIN_CHARS or not (has_letter and has_digit and has_special):
        raise _invalid(
            Reason.WEAK_PASSWORD,
            "password",
            f"password must be at least {PASSWORD_MIN_CHARS} characters and contain a letter, "
            "a digit and a special character",
            min_chars=str(PASSWORD_MIN_CHARS),
        )


def contains_markup(text: str) -> bool:
    """Whether ``text`` holds an HTML tag, comment, declaration or character reference."""
    return _MARKUP.search(text) is not None


def normalize_nickname(raw: str) -> str:
    """The stripped nickname: plain text of at most 64 characters, no control characters."""
    nickname = raw.strip()
    if len(nickname) > NICKNAME_MAX_CHARS:
        raise _invalid(
            Reason.INVALID_NICKNAME,
            "nickname",
            f"nickname must be at most {NICKNAME_MAX_CHARS} characters",
            max_chars=str(NICKNAME_MAX_CHARS),
        )
    if any(unicodedata.category(c) == "Cc" for c in nickname):
        raise _invalid(
            Reason.INVALID_NICKNAME, "nickname", "nickname must not contain control characters"
        )
    if contains_markup(nickname):
        raise _invalid(
            Reason.INVALID_NICKNAME,
            "nickname",
            "nickname must be plain text, without HTML tags or character references",
        )
    return nickname


def check_about_me(about_me: str) -> str:
    """``about_me`` unchanged if it is plain text of at most 1024 characters, no stray
    controls."""
    if len(about_me) > ABOUT_ME_MAX_CHARS:
        raise _invalid(
            Reason.INVALID_ABOUT_ME,
            "about_me",
            f"about me must be at most {ABOUT_ME_MAX_CHARS} characters",
            max_chars=str(ABOUT_ME_MAX_CHARS),
        )
    if any(
        unicodedata.category(c) == "Cc" and c not in _ABOUT_ME_CONTROLS_ALLOWED for c in about_me
    ):
        raise _invalid(
            Reason.INVALID_ABOUT_ME, "about_me", "about me must not contain control characters"
        )
    if contains_markup(about_me):
        raise _invalid(
            Reason.INVALID_ABOUT_ME,
            "about_me",
            "about me must be plain text, without HTML tags or character references",
        )
    return about_me


def parse_birthday(raw: str, *, today_utc: date) -> date | None:
    """A birthday from ``YYYY-MM-DD``, or ``None`` for an empty string.

    The latest accepted date is ``today_utc`` + 1 day: the date is already "today" in the
    time zones east of UTC, and clients may send the current local date.
    """
    text = raw.strip()
    if not text:
        return None
    if not _ISO_DATE.fullmatch(text):
        raise _invalid(
            Reason.INVALID_BIRTHDAY, "birthday", "birthday must be a date written YYYY-MM-DD"
        )
    try:
        value = date.fromisoformat(text)
    except ValueError as exc:
        raise _invalid(
            Reason.INVALID_BIRTHDAY, "birthday", f"birthday {text} is not a real calendar date"
        ) from exc
    if value < BIRTHDAY_MIN:
        raise _invalid(
            Reason.INVALID_BIRTHDAY,
            "birthday",
            f"birthday must not be before {BIRTHDAY_MIN.isoformat()}",
        )
    if value > today_utc + timedelta(days=1):
        raise _invalid(Reason.INVALID_BIRTHDAY, "birthday", "birthday must not be in the future")
    return value


def normalize_phone(raw: str) -> str:
    """The E.164 form of a mobile number, the account's key (``13812345678`` →
    ``+8613812345678``)."""
    try:
        return e164_phone(raw)
    except InvalidPhoneNumber as exc:
        raise _invalid(Reason.INVALID_PHONE, "phone", f"invalid phone: {exc}") from exc


def _is_wechat_id(value: str) -> bool:
    return len(value) <= WECHAT_ID_MAX_CHARS and not any(
        c.isspace() or unicodedata.category(c) == "Cc" for c in value
    )


def normalize_wechat(open_id: str, union_id: str) -> WechatInfo:
    """Stripped WeChat ids; ``open_id`` is required."""
    info = WechatInfo(open_id=open_id.strip(), union_id=union_id.strip())
    if not info.open_id:
        raise _invalid(Reason.INVALID_WECHAT_INFO, "open_id", "WeChat open id is required")
    for name, value in (("open_id", info.open_id), ("union_id", info.union_id)):
        if not _is_wechat_id(value):
            raise _invalid(
                Reason.INVALID_WECHAT_INFO,
                name,
                f"WeChat {name.replace('_', ' ')} must be at most {WECHAT_ID_MAX_CHARS} "
                "characters without spaces",
                max_chars=str(WECHAT_ID_MAX_CHARS),
            )
    return info


def normalize_ids(ids: Iterable[int]) -> list[int]:
    """Distinct positive ids in first-seen order; at most 100 (ids ≤ 0 never exist)."""
    distinct = list(dict.fromkeys(i for i in ids if i > 0))
    if len(distinct) > MAX_IDS_PER_BATCH:
        raise _invalid(
            Reason.TOO_MANY_IDS,
            "ids",
            f"at most {MAX_IDS_PER_BATCH} distinct ids per request, got {len(distinct)}",
            max_ids=str(MAX_IDS_PER_BATCH),
        )
    return distinct
