"""Three scheduler processes on one MariaDB database under SIGKILL and SIGSTOP of the
instance holding a job: no job ever runs twice at once, none misses a due run, a dead or
frozen holder's job is taken over within a lease and a tick, and a frozen holder's late
request is refused by the callee's fencing check.

Three ``@every 200ms`` http jobs post to the test's fencing server
(:class:`tests.chaos.scheduler_rig.FencingServer`: it holds each accepted request 80 ms
and answers 409 to a token below the highest it accepted). Leases last 2 s, renewed every
0.5 s; instances tick every 0.1 s. :data:`ROUNDS` rounds each SIGKILL the holder of a job
(and restart it once the job was taken over), then SIGSTOP a holder and SIGCONT it once
its job was taken over and a lease has passed; half of the SIGSTOPs aim at the few
milliseconds between the take and the request, so that the frozen instance sends its
request late. Then the database stalls every write for :data:`DATABASE_STALL_S` (three
leases; :func:`~tests.chaos.scheduler_rig.stall_database`): takes, renewals and releases
sent meanwhile all proceed together when it ends, and none may start a run on a lease that
expired while it waited (the first version did: two runs of one job at once). Then the jobs
run on until :data:`RUNS` runs were accepted in all, and the fencing log, the history, the
logs and the metrics are checked
(:func:`tests.chaos.scheduler_rig.analyse`; the bounds and their slack are
:class:`~tests.chaos.scheduler_rig.Timing`'s).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.scheduler_rig import (
    SCHEDULER_FAULTS,
    WAIT_S,
    Fault,
    Rig,
    SchedulerFaultOutcome,
    Seizure,
    analyse,
    quiesce,
    running_rig,
    sigkill_round,
    sigstop_round,
    stall_database,
    until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.mysql]

JOBS = 3
ROUNDS = 3
RUNS = 450
DATABASE_STALL_S = 6.0


async def _runs_reach(rig: Rig, count: int) -> None:
    async def reached() -> bool:
        return rig.server.accepted_runs() >= count

    # About eight runs a second in all; a loaded machine may halve that.
    await until(reached, f"{count} accepted runs", within_s=max(WAIT_S, count / 2))


@pytest.mark.timeout(600)
async def test_sigkill_and_sigstop_of_holders(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    faults: list[Fault] = []
    seizure = Seizure()
    async with running_rig(tmp_path, jobs=JOBS) as rig:
        await _runs_reach(rig, 10)
        for round_ in range(ROUNDS):
            faults.append(await sigkill_round(rig, seizure))
            faults.append(await sigstop_round(rig, seizure, before_request=round_ % 2 == 0))
        stall = await stall_database(rig, DATABASE_STALL_S)
        await _runs_reach(rig, RUNS)
        await quiesce(rig)
        analysis = await analyse(rig, faults)
        logs = rig.cluster.log_tail()
    outcome = SchedulerFaultOutcome(
        fault=(
            f"{ROUNDS} x (SIGKILL, SIGSTOP) of a holder, then writes stalled "
            f"{DATABASE_STALL_S:.0f} s, 3 instances"
        ),
        seconds=time.monotonic() - started,
        runs=analysis.runs,
        sigkills=sum(1 for f in faults if f.signal == "SIGKILL"),
        sigstops=sum(1 for f in faults if f.signal == "SIGSTOP"),
        late_attempts=analysis.late_attempts,
        refusals=analysis.refusals,
        max_gap_ms=analysis.max_gap_ms,
        max_takeover_delay_ms=analysis.max_takeover_delay_ms,
        takeovers_logged=analysis.takeovers_logged,
        violations=len(analysis.violations),
        stalls=len(analysis.stalls),
        longest_stall_ms=analysis.longest_stall_ms,
    )
    request.config.stash.setdefault(SCHEDULER_FAULTS, []).append(outcome)

    assert analysis.violations == [], "\n".join([*analysis.violations, logs])
    assert analysis.runs >= RUNS
    assert len(analysis.takeover_delays_ms) == len(faults)
    # Every frozen holder's run was fenced; a dead one's was closed by its taker as
    # abandoned (failed), or never recorded if it died before recording its start.
    for name, recorded in analysis.victim_outcomes.items():
        expected = ("fenced",) if name.startswith("SIGSTOP") else ("failed", "not recorded")
        assert recorded in expected, f"{name}: recorded {recorded!r}"
    assert analysis.takeovers_logged >= len(faults)
    # The monitor saw the planned stall: its measure of the unplanned ones can be trusted.
    assert any(
        st.kind == "database"
        and st.start_ms <= stall.start_ms + 1000
        and st.end_ms >= stall.end_ms - 1000
        for st in analysis.stalls
    ), analysis.stalls
