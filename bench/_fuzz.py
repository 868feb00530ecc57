"""Fuzzing the running gateway with schemathesis, from its own ``/openapi.json``.

Shared by the chaos run (``tests/chaos/test_fuzz.py``) and ``make bench``
(:mod:`bench.fuzz`). :func:`fuzz` loads the schema the gateway serves, and for every
operation generates ``examples`` cases with Hypothesis — half that fit the schema
(``positive``), half that do not (``negative``: wrong types, missing fields, values out of
range) — sends each to the gateway and runs schemathesis's checks on the answer:

- ``not_a_server_error``: no 5xx, ever (bad input is the client's fault: code 4);
- ``status_code_conformance``: the status is one the schema documents for the operation;
- ``content_type_conformance``: the answer's media type is one the schema documents;
- ``response_headers_conformance``: documented required headers are there;
- ``response_schema_conformance``: the body validates against the documented schema.

Failures are collected, not raised, so one run reports every distinct problem (by
operation and check) with a ``curl`` command that reproduces it; Hypothesis does not
shrink them. :func:`signed_in_headers` signs a real user up and in and returns its Bearer
header, for a logged-in run. A logged-in run may log its own session out (``POST
/users/logout`` is one of the operations) or refresh it away: after any 401 the user signs in
again, so the rest of the run stays logged in. The Hypothesis example database is off (no
files written) and the seed fixed, so a run is reproducible against the same code.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

PASSWORD: Final = "hello#world123"
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MODES: Final = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
REQUEST_TIMEOUT_S: Final = 10.0
USER_AGENT: Final = "webook-fuzz/1.0"


@dataclass(frozen=True)
class FuzzFailure:
    """One distinct problem: an operation, the check that failed, and how to reproduce it."""

    operation: str
    check: str
    status: int
    message: str
    curl: str


@dataclass
class FuzzReport:
    """What one run sent and found."""

    label: str
    operations: int = 0
    cases: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    # 401 answers by operation and generation mode (anonymous: every logged-in route).
    unauthorized: Counter[str] = field(default_factory=Counter)
    # Distinct failures (first case of each (operation, check, status)), and how many cases
    # failed in all.
    failures: dict[tuple[str, str, int], FuzzFailure] = field(default_factory=dict)
    failed_cases: int = 0
    relogins: int = 0
    # (operation, mode) pairs for which no case can be generated (no inputs to break).
    unsatisfiable: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def violations(self) -> int:
        """Distinct schema violations (failures of checks other than ``not_a_server_error``)."""
        return sum(1 for (_, check, _) in self.failures if check != "not_a_server_error")

    def lines(self) -> list[str]:
        """A summary line, then one block per distinct failure."""
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        out = [
            f"fuzz {self.label}: {self.cases} cases over {self.operations} operations in "
            f"{self.seconds:.1f}s; statuses {statuses}; {self.server_errors} 5xx, "
            f"{len(self.failures)} distinct failures in {self.failed_cases} cases, "
            f"{self.relogins} re-logins; no cases possible for {len(self.unsatisfiable)} "
            "operation/mode pairs (no inputs)"
        ]
        if self.unauthorized:
            top = ", ".join(f"{op} {n}" for op, n in self.unauthorized.most_common())
            out.append(f"  401 by operation (mode): {top}")
        for failure in self.failures.values():
            out.append(
                f"  {failure.operation} [{failure.check}] HTTP {failure.status}: "
                f"{failure.message[:400]}\n    {failure.curl}"
            )
        return out


def signed_in_headers(base_url: str) -> dict[str, str]:
    """Sign a new user up and in; its ``Authorization: Bearer`` and ``User-Agent`` headers."""
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    # The gateway binds a session to the User-Agent it logged in with: send the same one.
    agent = {"User-Agent": USER_AGENT}
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers=agent) as http:
        signup = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
        answer = http.post("/users/signup", json=signup).json()
        if answer.get("code") != 0:
            raise RuntimeError(f"fuzz user sign-up refused: {answer}")
        response = http.post("/users/login", json={"email": email, "password": PASSWORD})
        token = response.headers.get("x-jwt-token")
        if response.status_code != 200 or not token:
            raise RuntimeError(f"fuzz user login refused: HTTP {response.status_code}")
    return {"Authorization": f"Bearer {token}", **agent}


def _check_name(failure: Failure) -> str:
    return failure.checks[0] if failure.checks else type(failure).__name__


def fuzz(
    base_url: str,
    *,
    label: str,
    examples: int,
    sign_in: Callable[[], dict[str, str]] | None = None,
    rng_seed: int = 20261202,
) -> FuzzReport:
    """Fuzz every operation of the gateway at ``base_url``; see the module docstring.

    ``examples`` cases per operation and generation mode; ``sign_in`` gives the headers of
    a logged-in run (called once, and again after every 401), None for an anonymous run.
    """
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    report = FuzzReport(label=label)
    headers: dict[str, Any] = dict(sign_in()) if sign_in is not None else {}
    started = time.monotonic()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise RuntimeError(f"the gateway's schema is invalid: {result.err()}")
            operation = result.ok()
            report.operations += 1
            for mode in MODES:
                _fuzz_operation(
                    operation, mode, base_url, session, headers, sign_in, examples, rng_seed, report
                )
    report.seconds = time.monotonic() - started
    return report


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    base_url: str,
    session: requests.Session,
    headers: dict[str, Any],
    sign_in: Callable[[], dict[str, str]] | None,
    examples: int,
    rng_seed: int,
    report: FuzzReport,
) -> None:
    """``examples`` cases of one operation in one generation mode, recorded in ``report``."""

    @seed(rng_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        # Hypothesis may stop early when it has exhausted small input spaces.
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one_case(case: schemathesis.Case[Any]) -> None:
        response = case.call(
            base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
        )
        report.cases += 1
        report.statuses[response.status_code] += 1
        if response.status_code == 401:
            report.unauthorized[f"{operation.label} ({mode.value})"] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            report.failed_cases += 1
            for failure in group.exceptions:
                key = (operation.label, _check_name(failure), response.status_code)
                if key not in report.failures:
                    report.failures[key] = FuzzFailure(
                        operation=operation.label,
                        check=key[1],
                        status=response.status_code,
                        message=f"{failure.title}: {failure.message}".strip(),
                        curl=case.as_curl_command(headers=dict(response.request.headers)),
                    )
        if response.status_code == 401 and sign_in is not None:
            # The case logged the session out (or sent a bad token of its own): sign in
            # again so the following cases are logged in.
            headers.update(sign_in())
            report.relogins += 1

    try:
        one_case()
    except Unsatisfiable:
        # Nothing to vary: an operation without parameters or body has no negative cases.
        report.unsatisfiable.append(f"{operation.label} ({mode.value})")
