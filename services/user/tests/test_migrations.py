"""Revision 0002: phones stored before normalisation become E.164, unless that merges accounts.

On SQLite files of their own: a revision is tested from the schema before it, which the
shared MariaDB database of the session (always at the latest revision) cannot give.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from kit.migrations import upgrade_async
from kit.sql import create_engine

pytestmark = pytest.mark.integration

INSERT = text(
    "INSERT INTO users (id, phone, email, nickname, about_me, ctime, utime) "
    "VALUES (:id, :phone, :email, '', '', 0, 0)"
)


async def _at_0001_with(url: str, rows: list[dict[str, object]]) -> None:
    await upgrade_async("user", url, "0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for row in rows:
                await conn.execute(INSERT, row)
    finally:
        await engine.dispose()


async def _phones(url: str) -> dict[int, str | None]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, phone FROM users ORDER BY id"))).all()
    finally:
        await engine.dispose()
    return {row[0]: row[1] for row in rows}


async def test_mainland_phones_become_e164(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    await _at_0001_with(
        url,
        [
            {"id": 1, "phone": "13900000003", "email": None},
            {"id": 2, "phone": "+8613900000004", "email": None},
            {"id": 3, "phone": "+447400123456", "email": None},
            {"id": 4, "phone": None, "email": "a@example.com"},
        ],
    )

    await upgrade_async("user", url)

    assert await _phones(url) == {
        1: "+8613900000003",
        2: "+8613900000004",
        3: "+447400123456",
        4: None,
    }


async def test_two_accounts_for_one_number_stop_the_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    rows: list[dict[str, object]] = [
        {"id": 1, "phone": "13900000003", "email": None},
        {"id": 2, "phone": "+8613900000003", "email": None},
        {"id": 3, "phone": "13900000005", "email": None},
    ]
    await _at_0001_with(url, rows)

    with pytest.raises(RuntimeError, match="user ids 1 and 2"):
        await upgrade_async("user", url)

    # Nothing was rewritten: a person decides which account keeps the number.
    assert await _phones(url) == {1: "13900000003", 2: "+8613900000003", 3: "13900000005"}
