"""Create ``interactives`` (counters), ``user_likes`` and ``user_collects``.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Types are spelled out here rather than imported from the models: a revision must keep
# meaning what it meant when it was written.
def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        nullable=False,
        autoincrement=True,
    )


def _biz() -> sa.Column[str]:
    # Binary collation: business kinds compare exactly on MySQL/MariaDB, as on SQLite.
    return sa.Column(
        "biz",
        sa.String(32).with_variant(mysql.VARCHAR(32, collation="utf8mb4_bin"), "mysql", "mariadb"),
        nullable=False,
    )


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    """Create the three tables with their unique keys."""
    op.create_table(
        "interactives",
        _id(),
        _biz(),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        _counter("read_cnt"),
        _counter("like_cnt"),
        _counter("collect_cnt"),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_interactives"),
        sa.UniqueConstraint("biz", "biz_id", name="uq_interactives_biz_biz_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "user_likes",
        _id(),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        _biz(),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_user_likes"),
        sa.UniqueConstraint("uid", "biz", "biz_id", name="uq_user_likes_uid_biz_biz_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "user_collects",
        _id(),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("cid", sa.BigInteger(), nullable=False),
        _biz(),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_user_collects"),
        sa.UniqueConstraint("uid", "biz", "biz_id", name="uq_user_collects_uid_biz_biz_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_user_collects_uid_cid", "user_collects", ["uid", "cid"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("user_collects")
    op.drop_table("user_likes")
    op.drop_table("interactives")
