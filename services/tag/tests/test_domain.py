"""The rules of tag names, resources, tag sets, page sizes and cursors."""

from __future__ import annotations

import pytest

from kit.errors import AppError, ErrorKind
from services.tag.domain import (
    DEFAULT_PAGE,
    MAX_PAGE,
    check_resource,
    check_uid,
    decode_cursor,
    encode_cursor,
    page_size,
    tag_name,
    tag_set,
)
from services.tag.errors import DOMAIN, Reason


def refused(reason: Reason, call: object, *args: object) -> AppError:
    """The error ``call(*args)`` raises, checked to be an INVALID_ARGUMENT of ``reason``."""
    assert callable(call)
    with pytest.raises(AppError) as caught:
        call(*args)
    assert (caught.value.domain, caught.value.kind, caught.value.reason) == (
        DOMAIN,
        ErrorKind.INVALID_ARGUMENT,
        reason,
    )
    return caught.value


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("go", "go"),
        ("  Python  ", "Python"),
        ("e\u0301t\u00e9", "\u00e9t\u00e9"),
        ("x" * 32, "x" * 32),
    ],
)
def test_names_are_normalised_and_trimmed(raw: str, stored: str) -> None:
    assert tag_name(raw) == stored


@pytest.mark.parametrize("raw", ["", "   ", "x" * 33, "a\nb", "tab\there", "zero\u200bwidth"])
def test_bad_names_are_refused(raw: str) -> None:
    error = refused(Reason.INVALID_NAME, tag_name, raw)
    assert error.metadata["field"] == "name"


def test_ids_and_resources_are_checked() -> None:
    assert check_uid(1) == 1
    refused(Reason.INVALID_USER, check_uid, 0)
    check_resource("article", 1)
    refused(Reason.INVALID_BIZ, check_resource, "video", 1)
    refused(Reason.INVALID_BIZ, check_resource, "article", 0)


def test_tag_sets_are_distinct_positive_and_bounded() -> None:
    assert tag_set([3, 1, 3], per_resource=2) == frozenset({1, 3})
    assert tag_set([], per_resource=2) == frozenset()
    refused(Reason.INVALID_TAGS, tag_set, [1, -1], 5)
    error = refused(Reason.INVALID_TAGS, tag_set, [1, 2, 3], 2)
    assert error.metadata["max"] == "2"


def test_page_sizes_default_and_are_bounded() -> None:
    assert page_size(0) == DEFAULT_PAGE
    assert page_size(MAX_PAGE) == MAX_PAGE
    refused(Reason.INVALID_LIMIT, page_size, -1)
    refused(Reason.INVALID_LIMIT, page_size, MAX_PAGE + 1)


def test_cursors_round_trip_and_are_tied_to_their_tag() -> None:
    cursor = encode_cursor(5, 1234)
    assert "1234" not in cursor  # opaque
    assert decode_cursor(cursor, 5) == 1234
    assert decode_cursor("", 5) is None
    refused(Reason.INVALID_CURSOR, decode_cursor, cursor, 6)


@pytest.mark.parametrize("cursor", ["10", "c1.", "c1.!!!", "c1.bm90IG51bWJlcnM", "c2.NTox"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    refused(Reason.INVALID_CURSOR, decode_cursor, cursor, 5)
