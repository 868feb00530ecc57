"""Create ``article_outbox``: publication and withdrawal events, written with the change.

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
    """Create the outbox table and the relay's indexes."""
    create_outbox_table_v1("article_outbox")


def downgrade() -> None:
    """Drop the outbox table (unsent events in it are lost)."""
    drop_outbox_table_v1("article_outbox")
