"""Create ``scheduler_jobs`` and ``scheduler_executions``.

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


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create both tables and their indexes (see ``services/scheduler/repository/dao.py``)."""
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", _big_id(), nullable=False, autoincrement=True),
        sa.Column(
            "name",
            sa.String(128).with_variant(
                mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column("cron", sa.String(256), nullable=False),
        sa.Column("executor_kind", sa.String(16), nullable=False),
        sa.Column("executor_config", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("next_run_ms", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_jobs"),
        sa.UniqueConstraint("name", name="uq_scheduler_jobs_name"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        "ix_scheduler_jobs_status_next_run_ms", "scheduler_jobs", ["status", "next_run_ms"]
    )
    op.create_table(
        "scheduler_executions",
        sa.Column("id", _big_id(), nullable=False, autoincrement=True),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_executions"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_scheduler_executions_job_id_id", "scheduler_executions", ["job_id", "id"])
    op.create_index("ix_scheduler_executions_started_ms", "scheduler_executions", ["started_ms"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("scheduler_executions")
    op.drop_table("scheduler_jobs")
