"""Schemathesis against the chaos stack's gateway, from the ``/openapi.json`` it serves.

Two runs (:func:`bench._fuzz.fuzz`): anonymous, and as a real signed-in user with its
Bearer token; together at least ``MIN_CASES`` generated cases, positive and negative. The
checks: no 5xx answer, and every answer conforms to the schema (status code, content type,
headers, body). Each distinct failure is reported with a ``curl`` command reproducing it.
"""

from __future__ import annotations

from functools import partial

import pytest

from bench._fuzz import fuzz, signed_in_headers
from bench._workload import RunningStack
from tests.chaos.report import FuzzOutcome

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

# Cases per operation and generation mode, in each of the two runs.
EXAMPLES = 12
MIN_CASES = 1000


@pytest.mark.timeout(900)
def test_fuzzing_finds_no_server_error_and_no_schema_violation(
    chaos_stack: RunningStack, fuzz_outcomes: list[FuzzOutcome]
) -> None:
    base_url = chaos_stack.base_url
    reports = [
        fuzz(base_url, label="anonymous", examples=EXAMPLES),
        fuzz(
            base_url,
            label="logged in (Bearer)",
            examples=EXAMPLES,
            sign_in=partial(signed_in_headers, base_url),
        ),
    ]
    for report in reports:
        fuzz_outcomes.append(
            FuzzOutcome(
                run=report.label,
                operations=report.operations,
                cases=report.cases,
                server_errors=report.server_errors,
                violations=report.violations,
                seconds=report.seconds,
            )
        )
    details = "\n".join(line for report in reports for line in report.lines())
    assert sum(r.cases for r in reports) >= MIN_CASES, details
    assert all(r.server_errors == 0 for r in reports), details
    assert all(not r.failures for r in reports), details
    assert chaos_stack.dead() == []
