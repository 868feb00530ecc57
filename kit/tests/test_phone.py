"""Phone numbers: every spelling of a number is one E.164 string; invalid ones are refused."""

from __future__ import annotations

import pytest

from kit.phone import (
    CountryNotAllowed,
    InvalidPhoneNumber,
    check_country,
    normalize_phone,
    phone_region,
)


@pytest.mark.parametrize(
    "form",
    [
        "13900000003",
        "+8613900000003",
        " 13900000003\n",
        "+86 139 0000 0003",
        "139-0000-0003",
        "139.0000.0003",
        "(139) 0000 0003",
        "0086 139 0000 0003",
        "8613900000003",
    ],
)
def test_forms_of_one_mainland_number_are_one_e164(form: str) -> None:
    assert normalize_phone(form) == "+8613900000003"


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("07400 123456", "GB", "+447400123456"),
        ("+44 7400 123456", "CN", "+447400123456"),
        ("(202) 555-0123", "US", "+12025550123"),
        ("13900000003", "CN", "+8613900000003"),
    ],
)
def test_the_default_region_reads_numbers_without_a_plus(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, default_region=region) == e164


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "required"),
        ("   ", "required"),
        ("12345", "not a valid phone number"),
        ("23900000003", "not a valid phone number"),
        ("1390000000", "not a valid phone number"),
        ("139000000031", "not a valid phone number"),
        ("+0123456789", "not a phone number"),
        ("+12345", "not a valid phone number"),
        ("01012345678", "not a mobile phone number"),  # a Beijing fixed line
        ("1-800-FLOWERS", "only digits"),
        ("139 0000 0003 ext. 12", "only digits"),
        ("+86+13900000003", "only digits"),
        ("".join(chr(0xFF10 + int(d)) for d in "13900000003"), "only digits"),
        ("1" * 40, "too long"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(raw: str, problem: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=problem):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+8613900000003", "CN"),
        ("+447400123456", "GB"),
        ("+12025550123", "US"),
        ("+14165550123", "CA"),
        ("not a number", ""),
    ],
)
def test_phone_region(e164: str, region: str) -> None:
    assert phone_region(e164) == region


def test_country_check_accepts_allowed_countries_in_any_case() -> None:
    assert check_country("+8613900000003", ["CN"]) == "CN"
    assert check_country("+447400123456", ["cn", "gb"]) == "GB"


@pytest.mark.parametrize(
    ("e164", "allowed", "region"),
    [
        ("+447400123456", ["CN"], "GB"),
        ("+14165550123", ["US"], "CA"),  # same calling code, another country
        ("+8613900000003", [], "CN"),
    ],
)
def test_country_check_refuses_other_countries(e164: str, allowed: list[str], region: str) -> None:
    with pytest.raises(CountryNotAllowed) as refused:
        check_country(e164, allowed)
    assert refused.value.region == region
    assert region in str(refused.value)
