"""Create ``follow_outbox`` (``UserFollowed`` events, :mod:`kit.outbox`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from kit.outbox.migration import create_outbox_table_v1, drop_outbox_table_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the outbox table (see ``services/follow/repository/dao.py``)."""
    create_outbox_table_v1("follow_outbox")


def downgrade() -> None:
    """Drop the outbox table (unsent events are lost)."""
    drop_outbox_table_v1("follow_outbox")
