"""What a service's Alembic revision calls to create or drop its outbox table.

The helpers are versioned: ``create_outbox_table_v1`` creates the table exactly as
:func:`kit.outbox.table.outbox_model` described it when it was written, and will keep doing
so; a later change of the outbox schema adds a new helper (an ``upgrade_outbox_table_v2``)
for a new revision, so old revisions keep meaning what they meant. Types are spelled out
here rather than taken from the model for the same reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql


def create_outbox_table_v1(table_name: str) -> None:
    """Create the outbox table ``table_name`` and the relay's indexes (inside a revision)."""
    op.create_table(
        table_name,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column(
            "event_key",
            sa.String(255).with_variant(
                mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.BigInteger(), nullable=True),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table_name}"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(f"ix_{table_name}_sent_ms_id", table_name, ["sent_ms", "id"])
    op.create_index(f"ix_{table_name}_event_key_id", table_name, ["event_key", "id"])


def drop_outbox_table_v1(table_name: str) -> None:
    """Drop the outbox table ``table_name`` (the downgrade of :func:`create_outbox_table_v1`)."""
    op.drop_table(table_name)
