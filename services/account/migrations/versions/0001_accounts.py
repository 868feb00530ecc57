"""Create ``accounts``, ``account_activities``, ``account_fencing`` and ``account_reconciliations``.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MYSQL = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def _exact(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    """Create the tables and their indexes (see ``services/account/repository/dao.py``)."""
    op.create_table(
        "accounts",
        sa.Column("uid", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("type", sa.SmallInteger(), nullable=False, autoincrement=False),
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uid", "type", name="pk_accounts"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "account_activities",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("biz_key", _exact(64), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("account_type", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_activities"),
        sa.UniqueConstraint("biz_key", "account", name="uq_account_activities_biz_key_account"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_account_activities_account", "account_activities", ["account", "id"])
    op.create_index("ix_account_activities_at_ms", "account_activities", ["at_ms"])
    op.create_table(
        "account_fencing",
        sa.Column("job", _exact(64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_account_fencing"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "account_reconciliations",
        sa.Column("day_start_ms", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("credited_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("difference_fen", sa.BigInteger(), nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day_start_ms", name="pk_account_reconciliations"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("account_reconciliations")
    op.drop_table("account_fencing")
    op.drop_table("account_activities")
    op.drop_table("accounts")
