"""Create ``tags``, ``tag_resources``, ``tag_links`` and ``tag_outbox``.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kit.outbox.migration import create_outbox_table_v1, drop_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    """Create the tables (see ``services/tag/repository/dao.py``)."""
    op.create_table(
        "tags",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column(
            "name",
            sa.String(32).with_variant(
                mysql.VARCHAR(32, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("uid", "name", name="uq_tags_uid_name"),
        **_OPTIONS,
    )
    op.create_index("ix_tags_ctime", "tags", ["ctime"])
    op.create_table(
        "tag_resources",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("biz", sa.String(32), nullable=False),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tag_resources"),
        sa.UniqueConstraint("biz", "biz_id", name="uq_tag_resources_biz_biz_id"),
        **_OPTIONS,
    )
    op.create_index("ix_tag_resources_utime", "tag_resources", ["utime"])
    op.create_index("ix_tag_resources_uid", "tag_resources", ["uid"])
    op.create_table(
        "tag_links",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("tag_id", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("biz", sa.String(32), nullable=False),
        sa.Column("biz_id", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tag_links"),
        sa.UniqueConstraint("tag_id", "biz", "biz_id", name="uq_tag_links_tag_id_biz_biz_id"),
        **_OPTIONS,
    )
    op.create_index("ix_tag_links_tag_id_id", "tag_links", ["tag_id", "id"])
    op.create_index("ix_tag_links_biz_biz_id", "tag_links", ["biz", "biz_id"])
    op.create_index("ix_tag_links_uid", "tag_links", ["uid"])
    create_outbox_table_v1("tag_outbox")


def downgrade() -> None:
    """Drop every table (unsent events in the outbox are lost)."""
    drop_outbox_table_v1("tag_outbox")
    op.drop_table("tag_links")
    op.drop_table("tag_resources")
    op.drop_table("tags")
