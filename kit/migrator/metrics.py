"""Migration metrics, one set per process.

- ``webook_migrator_mode{migration}``: the mode as its step, 0 ``source_only`` to 3
  ``destination_only`` (1.5 ``switching``);
- ``webook_migrator_units_in_flight{migration}``: double-write units of work of this
  process that began and have not ended (0 on every replica in ``switching``: the switch
  to the other "first" mode is safe);
- ``webook_migrator_second_write_failures_total{table,side}``: double writes whose second
  side failed (the caller succeeded; the validator finds the row);
- ``webook_migrator_rows_checked_total{table,direction,validation}``: base-side and
  target-side rows the validator compared;
- ``webook_migrator_differences_total{table,direction,kind}``: differences found and
  published (``missing``, ``different``, ``extra``);
- ``webook_migrator_throttled_seconds_total{table,reason}``: time the validator waited for
  its rows/second budget (``budget``) or because the base side was slow (``latency``);
- ``webook_migrator_checkpoint_age_seconds{table,direction,validation}``: seconds since the
  validator last moved its checkpoint (computed when read): a stuck validator grows it;
- ``webook_migrator_validator_lag_seconds{table,direction}``: how far behind now the
  incremental validator's checkpoint is (the update time it reached; when neither side has
  a row, the time its last pass began);
- ``webook_migrator_fixes_total{table,outcome}``: difference events the fixer handled:
  ``upserted``, ``deleted``, ``skipped`` (a bad message), ``failed`` (gave up; the next
  validation finds the row again).

Every labelled series the dashboard (``deploy/grafana/dashboards/migration.json``) and the
alerts read exists at 0 as soon as the object that counts it does (:func:`declare_writes`,
:func:`declare_validation`, :func:`declare_fixes`): a rate over a counter that has not moved
yet is 0, not "no data", and an alert on an increase sees the first one.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

MODE = Gauge(
    "webook_migrator_mode",
    "Double-write mode of a migration: 0 source_only, 1 source_first, 1.5 switching, "
    "2 destination_first, 3 destination_only.",
    ["migration"],
)
IN_FLIGHT = Gauge(
    "webook_migrator_units_in_flight",
    "Double-write units of work of this process that began and have not ended.",
    ["migration"],
)
SECOND_WRITE_FAILURES = Counter(
    "webook_migrator_second_write_failures_total",
    "Double writes whose second side failed after the first committed (left to the validator).",
    ["table", "side"],
)
ROWS_CHECKED = Counter(
    "webook_migrator_rows_checked_total",
    "Rows the validator compared between the two sides.",
    ["table", "direction", "validation"],
)
DIFFERENCES = Counter(
    "webook_migrator_differences_total",
    "Differences the validator found and published, by kind.",
    ["table", "direction", "kind"],
)
THROTTLED = Counter(
    "webook_migrator_throttled_seconds_total",
    "Seconds the validator waited: for its rows/second budget, or because the base was slow.",
    ["table", "reason"],
)
CHECKPOINT_AGE = Gauge(
    "webook_migrator_checkpoint_age_seconds",
    "Seconds since the validator last advanced its checkpoint.",
    ["table", "direction", "validation"],
)
VALIDATOR_LAG = Gauge(
    "webook_migrator_validator_lag_seconds",
    "Now minus the update time the incremental validator has checked up to.",
    ["table", "direction"],
)
FIXES = Counter(
    "webook_migrator_fixes_total",
    "Difference events the fixer handled, by outcome.",
    ["table", "outcome"],
)

THROTTLE_REASONS = ("budget", "latency")
"""The ``reason`` label's values of :data:`THROTTLED`."""
FIX_OUTCOMES = ("upserted", "deleted", "skipped", "failed")
"""The ``outcome`` label's values of :data:`FIXES`."""


def declare_writes(tables: Iterable[str], sides: Iterable[str]) -> None:
    """The second-write failure series of every table of ``tables`` on every side at 0."""
    sides = tuple(sides)
    for table in tables:
        for side in sides:
            SECOND_WRITE_FAILURES.labels(table, side)


def declare_validation(
    table: str, directions: Iterable[str], validations: Iterable[str], kinds: Iterable[str]
) -> None:
    """The validator's counters of ``table`` at 0: rows checked per direction and validation,
    differences per direction and kind, waits per reason."""
    validations, kinds = tuple(validations), tuple(kinds)
    for direction in directions:
        for validation in validations:
            ROWS_CHECKED.labels(table, direction, validation)
        for kind in kinds:
            DIFFERENCES.labels(table, direction, kind)
    for reason in THROTTLE_REASONS:
        THROTTLED.labels(table, reason)


def declare_fixes(tables: Iterable[str]) -> None:
    """The fixer's series of every table of ``tables`` and every outcome at 0."""
    for table in tables:
        for outcome in FIX_OUTCOMES:
            FIXES.labels(table, outcome)
