"""``schema_drift`` sees differences in a service's own tables and ignores other tables."""

from __future__ import annotations

import sqlalchemy as sa

from kit.migrations import schema_drift


def _metadata(*extra: sa.Column[int]) -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("things", metadata, sa.Column("id", sa.Integer, primary_key=True), *extra)
    return metadata


def test_drift_in_own_tables_is_reported_and_foreign_tables_are_ignored() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        _metadata().create_all(conn)
        conn.execute(sa.text("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)"))
        assert schema_drift(conn, _metadata(), "svc") == []
        drift = schema_drift(conn, _metadata(sa.Column("size", sa.Integer)), "svc")
        assert len(drift) == 1
        assert "size" in str(drift)
    engine.dispose()
