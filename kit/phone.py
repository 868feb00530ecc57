"""Phone numbers as identities: one number, one string (E.164), whatever form it was typed in.

``13900000003``, ``139 0000 0003``, ``+86 139-0000-0003``, ``0086 13900000003`` and
``+8613900000003`` are one phone. Anything that keys on a phone (verification codes and
their limits, SMS sends, accounts) must first call :func:`normalize_phone`, so that a
different spelling is never a different phone: not a second resend limit, not a second set
of guesses, not a second account.

Numbers are parsed with ``phonenumbers`` (Google's libphonenumber metadata). A number without
a ``+`` is read in ``default_region`` (``CN`` unless the caller says otherwise: most users are
in mainland China). Only numbers that can receive SMS are accepted (mobile, or the
fixed-line-or-mobile numbering plans such as North America's); input may contain digits,
spaces, ``-``, ``.``, parentheses and one leading ``+`` — never letters (vanity numbers) or
non-ASCII digits.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

__all__ = [
    "DEFAULT_REGION",
    "MAX_PHONE_INPUT_CHARS",
    "CountryNotAllowed",
    "InvalidPhoneNumber",
    "check_country",
    "normalize_phone",
    "phone_region",
]

DEFAULT_REGION: Final = "CN"
"""Region (ISO 3166-1 alpha-2) in which numbers written without ``+`` are read."""

MAX_PHONE_INPUT_CHARS: Final = 32
"""Longest input parsed at all (E.164 has at most 16 characters; the rest is punctuation)."""

# ASCII only: str.isdigit() and phonenumbers both accept other scripts' digits.
_INPUT_SHAPE: Final = re.compile(r"\+?[0-9 ().-]+")
_SMS_CAPABLE: Final = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class InvalidPhoneNumber(ValueError):
    """Not a valid number that can receive SMS; ``str(error)`` is fit to show to a person."""


class CountryNotAllowed(ValueError):
    """A valid number in a country outside the allowed list; ``region`` names the country."""

    def __init__(self, region: str, allowed: Collection[str]) -> None:
        self.region = region
        self.allowed = tuple(sorted(allowed))
        super().__init__(
            f"phone numbers in {region or 'this country'} are not supported "
            f"(allowed countries: {', '.join(self.allowed) or 'none'})"
        )


def normalize_phone(raw: str, *, default_region: str = DEFAULT_REGION) -> str:
    """The E.164 form (``+8613900000003``) of a phone number that can receive SMS.

    Args:
        raw: the number as typed; surrounding whitespace is ignored.
        default_region: ISO 3166-1 alpha-2 region of numbers written without ``+``.

    Raises:
        InvalidPhoneNumber: not parseable, not a valid number, or not a mobile number.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("phone number is required")
    if len(text) > MAX_PHONE_INPUT_CHARS:
        # Checked before parsing, so that a huge input costs nothing.
        raise InvalidPhoneNumber(f"phone number is too long (at most {MAX_PHONE_INPUT_CHARS})")
    if not _INPUT_SHAPE.fullmatch(text):
        raise InvalidPhoneNumber(
            "phone number may contain only digits, spaces, '-', '.', parentheses and a leading '+'"
        )
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(
            "not a valid phone number (write it with its country code, e.g. +8613812345678)"
        )
    if phonenumbers.number_type(number) not in _SMS_CAPABLE:
        raise InvalidPhoneNumber("not a mobile phone number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def phone_region(e164: str) -> str:
    """The ISO 3166-1 alpha-2 region of a normalised number (``+8613…`` → ``CN``), or ``""``.

    Numbers sharing a calling code are told apart by their area codes (``+1`` is ``US``,
    ``CA`` or another North American country).
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return ""
    return phonenumbers.region_code_for_number(number) or ""


def check_country(e164: str, allowed: Collection[str]) -> str:
    """The region of ``e164`` if it is in ``allowed`` (ISO alpha-2 codes, any case).

    Raises:
        CountryNotAllowed: the number's region is not in ``allowed`` (or is unknown).
    """
    wanted = {code.upper() for code in allowed}
    region = phone_region(e164)
    if region not in wanted:
        raise CountryNotAllowed(region, wanted)
    return region
