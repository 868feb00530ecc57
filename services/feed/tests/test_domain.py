"""GetFeed's refusals and the cursor, without a database: input is checked before any
storage or peer is asked."""

from __future__ import annotations

import pytest

from kit.errors import AppError, ErrorKind
from services.feed.domain import Position, decode_cursor, encode_cursor
from services.feed.errors import DOMAIN, Reason
from services.feed.service import FeedService, UnitOfWork
from services.feed.tests.fakes import FakeFollowers


def _no_storage() -> UnitOfWork:
    raise AssertionError("a refused request must not reach storage")


def test_a_cursor_names_its_position_again() -> None:
    position = Position(at_ms=1_800_000_000_123, event_id="al-7-42")
    cursor = encode_cursor(position)
    assert "=" not in cursor
    assert decode_cursor(cursor) == position
    assert decode_cursor("") is None


@pytest.mark.parametrize(
    ("uid", "cursor", "limit", "reason"),
    [
        (7, "not a cursor!", 10, Reason.INVALID_CURSOR),
        (7, "bm90IGpzb24", 10, Reason.INVALID_CURSOR),  # base64 of "not json"
        (7, "eyJ2IjoyLCJ0IjoxLCJlIjoieCJ9", 10, Reason.INVALID_CURSOR),  # version 2
        (7, "eyJ2IjoxLCJ0IjoiMSIsImUiOiJ4In0", 10, Reason.INVALID_CURSOR),  # t a string
        (7, "eyJ2IjoxLCJ0IjoxLCJlIjoiIn0", 10, Reason.INVALID_CURSOR),  # empty event id
        (7, "A" * 300, 10, Reason.INVALID_CURSOR),
        (7, "", 101, Reason.INVALID_LIMIT),
        (7, "", -1, Reason.INVALID_LIMIT),
        (0, "", 10, Reason.INVALID_USER),
    ],
)
async def test_bad_requests_are_invalid_arguments(
    uid: int, cursor: str, limit: int, reason: Reason
) -> None:
    followers = FakeFollowers(down=True)
    service = FeedService(
        _no_storage,
        followers=followers,
        big_author_followers=lambda: 10,
        fanout_batch_size=lambda: 10,
        max_followees=10,
    )
    with pytest.raises(AppError) as caught:
        await service.get_feed(uid, cursor, limit)
    assert caught.value.domain == DOMAIN
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, reason)
    assert "cursor" not in caught.value.message or reason is Reason.INVALID_CURSOR
