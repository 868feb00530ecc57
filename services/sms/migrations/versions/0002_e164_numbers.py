"""Index send records by E.164 numbers only.

Numbers were stored as sent: 11-digit mainland numbers (``13800138000``) or E.164. Sends are
now normalised to E.164 before they are stored, and the admin view looks numbers up in that
form; this rewrites the older mainland rows of ``sms_send_record_numbers`` to ``+86…`` so
that they are still found. (Before this revision only ``1[3-9]`` + 9 digits or ``+…`` were
accepted, so every row without ``+`` is a mainland number.) ``sms_send_records.numbers`` is
left alone: it is what was sent, and the vendors read both forms.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_numbers = sa.table("sms_send_record_numbers", sa.column("phone", sa.String(20)))


def upgrade() -> None:
    """``13800138000`` → ``+8613800138000``."""
    phone = _numbers.c.phone
    op.execute(
        _numbers.update()
        .where(sa.not_(phone.startswith("+")))
        .values(phone=sa.literal("+86", sa.String(20)) + phone)
    )


def downgrade() -> None:
    """Nothing to undo: the E.164 form is as good a record of the number as the old one."""
