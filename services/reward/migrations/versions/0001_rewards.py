"""Create ``rewards`` and ``reward_outbox``.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kit.outbox.migration import create_outbox_table_v1, drop_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables (see ``services/reward/repository/dao.py``)."""
    op.create_table(
        "rewards",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("biz", sa.String(32), nullable=False),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("target_uid", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("code_url", sa.String(512), nullable=False, server_default=""),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rewards"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    create_outbox_table_v1("reward_outbox")


def downgrade() -> None:
    """Drop both tables (unsent events in the outbox are lost)."""
    drop_outbox_table_v1("reward_outbox")
    op.drop_table("rewards")
