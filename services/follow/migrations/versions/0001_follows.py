"""Create ``follow_relations`` and ``follow_stats``.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables and the list indexes (see ``services/follow/repository/dao.py``)."""
    op.create_table(
        "follow_relations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("follower", sa.BigInteger(), nullable=False),
        sa.Column("followee", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_follow_relations"),
        sa.UniqueConstraint("follower", "followee", name="uq_follow_relations_pair"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        "ix_follow_relations_follower", "follow_relations", ["follower", "status", "id"]
    )
    op.create_index(
        "ix_follow_relations_followee", "follow_relations", ["followee", "status", "id"]
    )
    op.create_table(
        "follow_stats",
        sa.Column("uid", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("followers", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("followees", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_follow_stats"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("follow_stats")
    op.drop_table("follow_relations")
