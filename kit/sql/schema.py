"""What every service's tables share: constraint names, MySQL table options, column types.

Each service keeps its own declarative base (its own ``MetaData``, so that its migrations
and the drift check see only its tables) and builds it from :func:`service_metadata`::

    class Base(DeclarativeBase):
        metadata = service_metadata()

Tables pass their extra arguments through :func:`table_args`, which appends the MySQL table
options (InnoDB, utf8mb4, ``utf8mb4_unicode_ci``); SQLite ignores them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, MetaData, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

# ``column_0_N_name`` joins every column of a multi-column index or unique constraint; the
# names of one-column constraints are the same as with ``column_0_name``.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_OPTIONS: dict[str, str] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def service_metadata() -> MetaData:
    """A fresh ``MetaData`` with the shared naming convention (one per service)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def table_args(*items: Any) -> tuple[Any, ...]:
    """``__table_args__`` of a table: ``items`` (indexes, constraints) and the MySQL options."""
    return (*items, MYSQL_TABLE_OPTIONS)


def big_id() -> TypeEngine[int]:
    """``BIGINT`` primary key type that still autoincrements on SQLite (only INTEGER does)."""
    return BigInteger().with_variant(Integer(), "sqlite")


def long_text() -> TypeEngine[str]:
    """``TEXT`` (SQLite) / ``MEDIUMTEXT`` (MySQL, MariaDB): up to 16 MB."""
    return Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def exact_string(length: int) -> TypeEngine[str]:
    """``VARCHAR(length)``, compared byte for byte on MySQL/MariaDB too (as on SQLite)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )
