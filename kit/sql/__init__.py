"""The persistence toolkit every service's repository builds on (SQLAlchemy 2.0, async).

- :mod:`~kit.sql.engine`: engines tuned for SQLite or MySQL/MariaDB, session factories;
- :mod:`~kit.sql.schema`: the shared naming convention, MySQL table options and column
  types (``big_id``, ``long_text``, ``exact_string``);
- :mod:`~kit.sql.statements`: portable upsert and insert-ignore;
- :mod:`~kit.sql.dao`: the base of every DAO;
- :mod:`~kit.sql.conflicts`: :class:`WriteConflict`, its detection and the retry helpers;
- :mod:`~kit.sql.unit_of_work`: the base of every service's unit of work;
- :mod:`~kit.sql.rows`: domain values built from rows (:func:`row_mapper`);
- :mod:`~kit.sql.databases`: whole MariaDB/MySQL databases: create, drop, scratch ones.

Everything is importable from ``kit.sql`` directly.
"""

from __future__ import annotations

from kit.sql.conflicts import (
    DEFAULT_ATTEMPTS,
    UnitOfWork,
    WriteConflict,
    backoff_delay,
    is_unique_violation,
    is_write_conflict,
    retry_on_conflict,
    transact,
)
from kit.sql.dao import SessionDAO
from kit.sql.databases import (
    create_database,
    database_url,
    drop_database,
    mysql_test_server,
    scratch_database,
)
from kit.sql.engine import (
    SessionFactory,
    create_engine,
    ensure_sqlite_directory,
    session_factory,
    sqlite_file,
)
from kit.sql.rows import RowMapper, row_mapper
from kit.sql.schema import (
    MYSQL_TABLE_OPTIONS,
    NAMING_CONVENTION,
    big_id,
    exact_string,
    long_text,
    service_metadata,
    table_args,
)
from kit.sql.statements import (
    dialect_name,
    insert_ignore,
    insert_ignore_statement,
    rowcount,
    upsert,
    upsert_statement,
)
from kit.sql.unit_of_work import CachingUnitOfWork, CommitHook, SqlUnitOfWork

__all__ = [
    "DEFAULT_ATTEMPTS",
    "MYSQL_TABLE_OPTIONS",
    "NAMING_CONVENTION",
    "CachingUnitOfWork",
    "CommitHook",
    "RowMapper",
    "SessionDAO",
    "SessionFactory",
    "SqlUnitOfWork",
    "UnitOfWork",
    "WriteConflict",
    "backoff_delay",
    "big_id",
    "create_database",
    "create_engine",
    "database_url",
    "dialect_name",
    "drop_database",
    "ensure_sqlite_directory",
    "exact_string",
    "insert_ignore",
    "insert_ignore_statement",
    "is_unique_violation",
    "is_write_conflict",
    "long_text",
    "mysql_test_server",
    "retry_on_conflict",
    "row_mapper",
    "rowcount",
    "scratch_database",
    "service_metadata",
    "session_factory",
    "sqlite_file",
    "table_args",
    "transact",
    "upsert",
    "upsert_statement",
]
