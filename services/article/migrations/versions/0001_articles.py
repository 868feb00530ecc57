"""Create the author store ``articles`` and the reader store ``published_articles``.

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
def _long_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _article_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("content", _long_text(), nullable=False),
        sa.Column("abstract", sa.String(128), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Column("utime", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    """Create both stores with their list indexes."""
    op.create_table(
        "articles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        *_article_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_articles_author_id_utime", "articles", ["author_id", "utime"])
    op.create_table(
        "published_articles",
        sa.Column("id", sa.BigInteger(), nullable=False, autoincrement=False),
        *_article_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_published_articles"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_published_articles_status_utime", "published_articles", ["status", "utime"])


def downgrade() -> None:
    """Drop both stores."""
    op.drop_table("published_articles")
    op.drop_table("articles")
