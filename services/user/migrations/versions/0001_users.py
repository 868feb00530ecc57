"""Create the ``users`` table.

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
def _exact_string(length: int) -> sa.types.TypeEngine[str]:
    # Binary collation: identities compare byte for byte on MySQL/MariaDB, as on SQLite.
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    """Create ``users`` with unique email, phone and WeChat open id."""
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("email", _exact_string(255), nullable=True),
        sa.Column("password_hash", sa.String(128), nullable=True),
        sa.Column("phone", _exact_string(32), nullable=True),
        sa.Column("wechat_open_id", _exact_string(128), nullable=True),
        sa.Column("wechat_union_id", _exact_string(128), nullable=True),
        sa.Column("nickname", sa.String(64), nullable=False, server_default=""),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("about_me", sa.String(1024), nullable=False, server_default=""),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("phone", name="uq_users_phone"),
        sa.UniqueConstraint("wechat_open_id", name="uq_users_wechat_open_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    """Drop ``users``."""
    op.drop_table("users")
