"""Three scheduler processes on one MariaDB database: SIGKILL the holder of a job, and the
job is taken over within the lease and a tick, never running twice at once.

The fast variant of ``tests/chaos/test_scheduler_faults.py`` (whose rig it uses): one
``@every 200ms`` http job posting to the test's fencing server, leases of 2 s renewed
every 0.5 s, ticks of 0.1 s; one SIGKILL of the instance holding the job, about twenty
runs. The bounds and their slack are :class:`tests.chaos.scheduler_rig.Timing`'s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scheduler_rig import (
    Rig,
    Seizure,
    analyse,
    quiesce,
    running_rig,
    sigkill_round,
    until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.mysql]

RUNS_BEFORE = 5
RUNS = 20


async def _runs_reach(rig: Rig, count: int) -> None:
    async def reached() -> bool:
        return rig.server.accepted_runs() >= count

    await until(reached, f"{count} accepted runs")


async def test_sigkill_of_the_holder_is_taken_over_within_the_lease(tmp_path: Path) -> None:
    async with running_rig(tmp_path, jobs=1) as rig:
        await _runs_reach(rig, RUNS_BEFORE)
        fault = await sigkill_round(rig, Seizure())
        await _runs_reach(rig, rig.server.accepted_runs() + RUNS - RUNS_BEFORE)
        await quiesce(rig)
        analysis = await analyse(rig, [fault])
        logs = rig.cluster.log_tail()

    assert analysis.violations == [], "\n".join([*analysis.violations, logs])
    assert analysis.runs >= RUNS
    assert fault.takeover is not None
    assert fault.takeover.instance != fault.victim
    # Killed while holding the job: its taker closed its run as abandoned (or it died
    # before recording its start).
    assert list(analysis.victim_outcomes.values()) in (["failed"], ["not recorded"])
    assert analysis.takeovers_logged >= 1
