"""The interactive service's tables moved to another MariaDB database under a live workload,
with the destination failing a tenth of its writes and the fixer killed mid-repair.

Ten users like, unlike, collect and read three articles through the gateway the whole
time (two interactive replicas behind it), the switch to ``destination_first`` included,
while the migration goes ``source_only`` → ``source_first`` → full validations with the
fixer → ``switching`` → ``destination_first`` → ``destination_only``, as
docs/migration-runbook.md describes
(:func:`tests.chaos.migration_rig.run_migration`). The source starts with 10,000 old rows
the copy has to bring over. The checks:

- no user request failed, in any phase;
- copies to the destination did fail during ``source_first`` (the triggers), and the
  first full validation found at least the old rows;
- the replica SIGKILLed mid-repair came back following the live mode setting;
- every phase reached a full validation that found nothing; the switch to
  ``destination_first`` is made under the users' writes, after a clean validation, through
  the ``switching`` barrier (switching directly lost a like count's change: replicas apply
  the mode a moment apart; docs/migration-runbook.md, step 3), and no request failed
  meanwhile; with the writes stopped at the end, full validations from either side find
  nothing and the tables are equal row for row;
- the destination holds exactly the likes and collections the users were acknowledged
  (counts included), and at least every acknowledged read; after ``destination_only`` it
  still does and the source was not written.

The figures (each phase's duration, requests, validations) are logged at WARNING
(``-o log_cli=true`` shows them) and summed up in docs/migration-runbook.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.migration_rig import SWITCH, MigrationPlan, run_migration

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.integration, pytest.mark.mysql]

PLAN = MigrationPlan(
    users=10,
    articles=3,
    seed_objects=4000,
    bulk_rows_per_second=800,
    rows_per_second=5000,
    requests_per_phase=300,
    failures_wanted=20,
)


@pytest.mark.timeout(900)
async def test_interactive_tables_move_under_load(tmp_path: Path) -> None:
    report = await run_migration(tmp_path, PLAN)
    figures = "\n".join(report.lines())

    assert report.failures == [], f"user requests failed:\n{figures}"
    assert report.second_write_failures > 0, figures
    assert report.triggers_removed
    # Every old row was missing on the destination (ids of seeded and new rows included).
    assert report.first_repair_differences >= report.seeded_rows, figures
    assert report.killed, figures
    assert report.killed_after_fixed > 0, figures
    assert report.restarted_mode == "source_first", figures
    assert report.fixed_total > 0, figures
    for phase in ("repair", SWITCH, "destination_first"):
        last = [v for v in report.validations if v.phase == phase][-1]
        assert last.differences == 0, f"{phase}: {last}\n{figures}"
        assert last.error == "", f"{phase}: {last}\n{figures}"
    assert report.final_differences == {"destination": 0, "source": 0}, figures
    assert report.tables_mismatch == {}, figures
    assert report.state_problems == [], figures
    assert not report.source_written_after_switch, figures
    assert report.destination_rows >= report.seeded_rows, figures
    assert report.switch["via"] == "switching", figures
    assert {i["mode"] for i in report.switch["instances"]} == {"destination_first"}, figures
