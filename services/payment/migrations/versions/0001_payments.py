"""Create ``payments``, ``payment_job_fences`` and ``payment_outbox``.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kit.outbox.migration import create_outbox_table_v1, drop_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables and indexes (see ``services/payment/repository/dao.py``)."""
    op.create_table(
        "payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column(
            "biz_trade_no",
            sa.String(32).with_variant(
                mysql.VARCHAR(32, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(127), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("code_url", sa.String(255), nullable=False, server_default=""),
        sa.Column("txn_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.Column("paid_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("biz_trade_no", name="uq_payments_biz_trade_no"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_payments_status_ctime", "payments", ["status", "ctime"])
    op.create_index("ix_payments_paid_ms", "payments", ["paid_ms"])
    op.create_table(
        "payment_job_fences",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_payment_job_fences"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    create_outbox_table_v1("payment_outbox")


def downgrade() -> None:
    """Drop the tables (unsent events in the outbox are lost)."""
    drop_outbox_table_v1("payment_outbox")
    op.drop_table("payment_job_fences")
    op.drop_table("payments")
