"""Revision 0002: numbers indexed before normalisation are found by their E.164 form.

On a SQLite file of its own: a revision is tested from the schema before it, which the
shared MariaDB database of the session (always at the latest revision) cannot give.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from kit.migrations import upgrade_async
from kit.sql import create_engine

pytestmark = pytest.mark.integration


async def test_mainland_numbers_become_e164(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await upgrade_async("sms", url, "0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for phone in ("13800138000", "+447400123456", "+8613900139000"):
                await conn.execute(
                    text("INSERT INTO sms_send_record_numbers (record_id, phone) VALUES (1, :p)"),
                    {"p": phone},
                )
        await upgrade_async("sms", url)
        async with engine.connect() as conn:
            phones = (
                await conn.execute(text("SELECT phone FROM sms_send_record_numbers ORDER BY id"))
            ).scalars()
            assert list(phones) == ["+8613800138000", "+447400123456", "+8613900139000"]
    finally:
        await engine.dispose()
