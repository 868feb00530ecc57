"""Send records and the numbers they went to.

Revision ID: 0001
Revises:
Create Date: 2024-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``sms_send_records`` and ``sms_send_record_numbers``."""
    op.create_table(
        "sms_send_records",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("tpl_id", sa.String(64), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("numbers", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(512), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(96), nullable=False),
        sa.Column("claim_until", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("expire_at", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_send_records"),
        sa.UniqueConstraint(
            "caller", "idempotency_key", name="uq_sms_send_records_caller_idempotency_key"
        ),
    )
    op.create_index(
        "ix_sms_send_records_status_next_attempt_at",
        "sms_send_records",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_sms_send_records_status_claim_until", "sms_send_records", ["status", "claim_until"]
    )
    op.create_index("ix_sms_send_records_caller_id", "sms_send_records", ["caller", "id"])
    op.create_index("ix_sms_send_records_tpl_id_id", "sms_send_records", ["tpl_id", "id"])
    op.create_index("ix_sms_send_records_ctime", "sms_send_records", ["ctime"])
    op.create_table(
        "sms_send_record_numbers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_send_record_numbers"),
    )
    op.create_index(
        "ix_sms_send_record_numbers_phone_record_id",
        "sms_send_record_numbers",
        ["phone", "record_id"],
    )
    op.create_index(
        "ix_sms_send_record_numbers_record_id", "sms_send_record_numbers", ["record_id"]
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("sms_send_record_numbers")
    op.drop_table("sms_send_records")
