"""The migration's series exist at 0 as soon as its objects do: a dashboard panel or an
alert over ``rate()``/``increase()`` sees the first failure only if the series was there
before it (no database is touched: the sessions refuse to be opened)."""

from __future__ import annotations

from typing import NoReturn

from prometheus_client import REGISTRY
from sqlalchemy import BigInteger, Column, Table

from kit.migrator import DoubleWriter, Fixer, MigratedTable, ModeHolder, Sides
from kit.migrator.metrics import FIX_OUTCOMES, THROTTLE_REASONS
from kit.migrator.validator import DifferenceKind, Direction, declare_metrics
from kit.sql import big_id, service_metadata

# Tables of this module only, so that no other test's increments show here.
metadata = service_metadata()
DATED = MigratedTable(
    Table(
        "metrics_dated",
        metadata,
        Column("id", big_id(), primary_key=True),
        Column("utime", BigInteger, nullable=False),
    ),
    updated_at="utime",
)
UNDATED = MigratedTable(
    Table("metrics_undated", metadata, Column("id", big_id(), primary_key=True)),
)


def _no_session() -> NoReturn:
    raise AssertionError("declaring metrics must not open a session")


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_series_starts_at_zero() -> None:
    sides = Sides(_no_session, _no_session)
    DoubleWriter(sides, ModeHolder("metrics-test"), [DATED, UNDATED])
    Fixer([DATED, UNDATED], sides)
    for migrated in (DATED, UNDATED):
        declare_metrics(migrated, list(Direction))

    for table in ("metrics_dated", "metrics_undated"):
        for side in ("source", "destination"):
            assert (
                sample("webook_migrator_second_write_failures_total", table=table, side=side) == 0
            )
        for outcome in FIX_OUTCOMES:
            assert sample("webook_migrator_fixes_total", table=table, outcome=outcome) == 0
        for reason in THROTTLE_REASONS:
            assert (
                sample("webook_migrator_throttled_seconds_total", table=table, reason=reason) == 0
            )
        for direction in Direction:
            assert (
                sample(
                    "webook_migrator_rows_checked_total",
                    table=table,
                    direction=direction.value,
                    validation="full",
                )
                == 0
            )
            for kind in DifferenceKind:
                assert (
                    sample(
                        "webook_migrator_differences_total",
                        table=table,
                        direction=direction.value,
                        kind=kind.value,
                    )
                    == 0
                )
    # incremental validation needs an update time: only the dated table has its series
    incremental = {"direction": Direction.SOURCE_TO_DESTINATION.value, "validation": "incremental"}
    assert sample("webook_migrator_rows_checked_total", table="metrics_dated", **incremental) == 0
    assert (
        sample("webook_migrator_rows_checked_total", table="metrics_undated", **incremental) is None
    )
