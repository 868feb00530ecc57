"""What each chaos test found, kept for the table printed at the end of ``make chaos``.

Every fault test records one :class:`FaultOutcome` *before* it asserts, so a failing test
still has its row; the fuzzing test records one :class:`FuzzOutcome` per run, and each
article-to-search fault (``test_outbox_search.py``) one :class:`SearchSyncOutcome`. The
conftest collects them in the pytest config's stash and prints :func:`fault_table`,
:func:`search_sync_table` and :func:`fuzz_table` in the terminal summary (also the tables
of docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PHASES = ("before", "fault", "recovering", "recovered")


@dataclass(frozen=True)
class FaultOutcome:
    """One fault: the workload around it and the checks after it."""

    fault: str
    seconds: float
    ops: Mapping[str, int]
    errors: Mapping[str, int]
    read_errors: int
    lost_writes: Sequence[str]
    uncounted_reads: Sequence[str]
    reads_converged_s: float | None
    alive: int
    processes: int
    dead: Sequence[str] = field(default_factory=tuple)
    # Why the final state could not be read back (empty when it could).
    verify_error: str = ""

    @property
    def passed(self) -> bool:
        """Whether every check of the fault held."""
        return (
            sum(self.ops.values()) > 0
            and self.read_errors == 0
            and self.errors.get("recovered", 0) == 0
            and not self.lost_writes
            and not self.uncounted_reads
            and not self.dead
            and not self.verify_error
        )


@dataclass(frozen=True)
class SearchSyncOutcome:
    """One fault on the way from an article change to the search index, and the checks after.

    ``lost`` names every acknowledged change search never reflected (an article whose
    acknowledged publication is not found by its word, or is found in an older version);
    ``searchable_withdrawn`` every article that ended withdrawn and is still found.
    """

    fault: str
    seconds: float
    acknowledged: int
    unacknowledged: int
    kills: int
    # Kills that left the relay's claimed, unsent outbox rows behind (None: not looked at).
    mid_batch_kills: int | None
    # Seconds from the end of the fault until search reflected every change (None: never).
    converged_s: float | None
    lost: Sequence[str]
    searchable_withdrawn: Sequence[str]
    alive: int
    processes: int
    dead: Sequence[str] = field(default_factory=tuple)
    # Why the final state could not be read back (empty when it could).
    verify_error: str = ""

    @property
    def passed(self) -> bool:
        """Whether every check of the fault held."""
        return (
            self.acknowledged > 0
            and self.converged_s is not None
            and not self.lost
            and not self.searchable_withdrawn
            and not self.dead
            and not self.verify_error
        )


@dataclass(frozen=True)
class FuzzOutcome:
    """One schemathesis run against the chaos stack's gateway."""

    run: str
    operations: int
    cases: int
    server_errors: int
    violations: int
    seconds: float


def _per_phase(values: Mapping[str, int]) -> str:
    return " / ".join(str(values.get(phase, 0)) for phase in PHASES)


def fault_table(outcomes: Sequence[FaultOutcome]) -> str:
    """The faults as one Markdown table."""
    lines = [
        "| fault | time | ops (before / fault / recovering / recovered) | errors (same phases) "
        "| idempotent read errors | lost writes | read counts | processes alive | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.verify_error:
            reads = f"**not checked**: {o.verify_error}"
        elif o.uncounted_reads:
            reads = f"**not converged**: {'; '.join(o.uncounted_reads)}"
        elif (o.reads_converged_s or 0.0) < 1.0:
            reads = "converged (first poll)"
        else:
            reads = f"converged after {o.reads_converged_s:.0f}s"
        lost = str(len(o.lost_writes)) if not o.lost_writes else f"**{len(o.lost_writes)}**"
        if o.verify_error:
            lost = "not checked"
        alive = f"{o.alive}/{o.processes}" + (f" (dead: {', '.join(o.dead)})" if o.dead else "")
        lines.append(
            f"| {o.fault} | {o.seconds:.0f}s | {_per_phase(o.ops)} | {_per_phase(o.errors)} "
            f"| {o.read_errors} | {lost} | {reads} | {alive} "
            f"| {'pass' if o.passed else '**FAIL**'} |"
        )
    return "\n".join(lines)


def search_sync_table(outcomes: Sequence[SearchSyncOutcome]) -> str:
    """The article-to-search faults as one Markdown table."""
    lines = [
        "| fault (article changes → search) | time | changes acknowledged / not "
        "| kills (mid-batch) | search | lost | withdrawn but searchable | processes alive "
        "| result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        kills = str(o.kills) if o.mid_batch_kills is None else f"{o.kills} ({o.mid_batch_kills})"
        if o.verify_error:
            search = f"**not checked**: {o.verify_error}"
        elif o.converged_s is None:
            search = "**not converged**"
        else:
            search = f"converged after {o.converged_s:.0f}s"
        lost, withdrawn = len(o.lost), len(o.searchable_withdrawn)
        alive = f"{o.alive}/{o.processes}" + (f" (dead: {', '.join(o.dead)})" if o.dead else "")
        lines.append(
            f"| {o.fault} | {o.seconds:.0f}s | {o.acknowledged} / {o.unacknowledged} | {kills} "
            f"| {search} | {lost if not lost else f'**{lost}**'} "
            f"| {withdrawn if not withdrawn else f'**{withdrawn}**'} | {alive} "
            f"| {'pass' if o.passed else '**FAIL**'} |"
        )
    return "\n".join(lines)


def fuzz_table(outcomes: Sequence[FuzzOutcome]) -> str:
    """The fuzzing runs as one Markdown table, with a total row."""
    lines = [
        "| fuzzing run | operations | generated cases | 5xx | schema violations | time |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.run} | {o.operations} | {o.cases} | {o.server_errors} | {o.violations} "
            f"| {o.seconds:.0f}s |"
        )
    if len(outcomes) > 1:
        lines.append(
            f"| total | | {sum(o.cases for o in outcomes)} "
            f"| {sum(o.server_errors for o in outcomes)} "
            f"| {sum(o.violations for o in outcomes)} "
            f"| {sum(o.seconds for o in outcomes):.0f}s |"
        )
    return "\n".join(lines)
