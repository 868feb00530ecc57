"""What each chaos test found, kept for the table printed at the end of ``make chaos``.

Every fault test records one :class:`FaultOutcome` *before* it asserts, so a failing test
still has its row; the fuzzing test records one :class:`FuzzOutcome` per run. The conftest
collects them in the pytest config's stash and prints :func:`fault_table` and
:func:`fuzz_table` in the terminal summary (also the tables of docs/reliability.md).
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
