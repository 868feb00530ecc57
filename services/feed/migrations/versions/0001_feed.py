"""Create ``feed_events``, ``feed_inbox``, ``feed_authors``, ``feed_fanouts`` and
``feed_withdrawn``.

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


def _exact(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    """Create the tables and their indexes (see ``services/feed/repository/dao.py``)."""
    op.create_table(
        "feed_events",
        sa.Column("event_id", _exact(64), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("actor", sa.BigInteger(), nullable=False),
        sa.Column("recipient", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.SmallInteger(), nullable=False),
        sa.Column("hidden", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("event_id", name="pk_feed_events"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_feed_events_outbox", "feed_events", ["actor", "model", "at_ms", "event_id"])
    op.create_index("ix_feed_events_article_id", "feed_events", ["article_id"])
    op.create_table(
        "feed_inbox",
        sa.Column("owner", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("event_id", _exact(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "event_id", name="pk_feed_inbox"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_feed_inbox_owner_at", "feed_inbox", ["owner", "at_ms", "event_id"])
    op.create_table(
        "feed_authors",
        sa.Column("uid", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("followers", sa.BigInteger(), nullable=False),
        sa.Column("big", sa.SmallInteger(), nullable=False),
        sa.Column("has_pull", sa.SmallInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_feed_authors"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "feed_fanouts",
        sa.Column("event_id", _exact(64), nullable=False),
        sa.Column("author", sa.BigInteger(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("written", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.SmallInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_feed_fanouts"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_feed_fanouts_done", "feed_fanouts", ["done"])
    op.create_table(
        "feed_withdrawn",
        sa.Column("article_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("article_id", name="pk_feed_withdrawn"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    """Drop every table (feeds are lost)."""
    op.drop_table("feed_withdrawn")
    op.drop_index("ix_feed_fanouts_done", table_name="feed_fanouts")
    op.drop_table("feed_fanouts")
    op.drop_table("feed_authors")
    op.drop_index("ix_feed_inbox_owner_at", table_name="feed_inbox")
    op.drop_table("feed_inbox")
    op.drop_index("ix_feed_events_article_id", table_name="feed_events")
    op.drop_index("ix_feed_events_outbox", table_name="feed_events")
    op.drop_table("feed_events")
