"""The interactive service's tables moved to another MariaDB database under a live
workload, short: the steps of ``tests/chaos/test_interactive_migration.py`` with fewer
users, old rows and requests (:func:`tests.chaos.migration_rig.run_migration`).

Four users like, unlike, collect and read two articles through the gateway while the
migration goes ``source_only`` → ``source_first`` (a tenth of the destination's writes
failing) → full validations with the fixer (the second replica SIGKILLed mid-repair and
started again) → ``destination_first`` (after a clean validation, through the
``switching`` barrier, the users writing on) → ``destination_only``. No request fails, every
phase reaches a clean full validation, both sides end equal, and the destination holds
exactly what the users were acknowledged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.migration_rig import MigrationPlan, run_migration

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.mysql]

PLAN = MigrationPlan(
    users=4,
    articles=2,
    seed_objects=600,
    bulk_rows_per_second=300,
    rows_per_second=5000,
    requests_per_phase=40,
    failures_wanted=3,
)


@pytest.mark.timeout(300)
async def test_interactive_tables_move_under_load(tmp_path: Path) -> None:
    report = await run_migration(tmp_path, PLAN)
    figures = "\n".join(report.lines())

    assert report.failures == [], f"user requests failed:\n{figures}"
    assert report.second_write_failures > 0, figures
    assert report.first_repair_differences >= report.seeded_rows, figures
    assert report.killed_after_fixed > 0, figures
    assert report.restarted_mode == "source_first", figures
    assert report.final_differences == {"destination": 0, "source": 0}, figures
    assert report.tables_mismatch == {}, figures
    assert report.state_problems == [], figures
    assert not report.source_written_after_switch, figures
    assert {i["mode"] for i in report.switch["instances"]} == {"destination_first"}, figures
