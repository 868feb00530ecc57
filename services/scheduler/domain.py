"""Jobs, leases and executions as plain data, and the rules a job definition must follow."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final

from services.scheduler.cron import CronError, Schedule, parse
from services.scheduler.errors import Reason, SchedulerInvalidArgument

MAX_NAME_LENGTH: Final = 128
MAX_CONFIG_BYTES: Final = 16_384
MAX_ERROR_LENGTH: Final = 2000
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 500
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


class JobStatus(IntEnum):
    """Whether the schedulers take the job when it is due."""

    ACTIVE = 1
    PAUSED = 2


class ExecutorKind(StrEnum):
    """How a job runs. ``local``: a function registered in the scheduler process.

    ``http`` and ``grpc`` are planned (docs/scheduler.md) and refused until they exist.
    """

    LOCAL = "local"


class Outcome(StrEnum):
    """How an execution ended (``running`` until it does)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    # The run lost its lease (a renewal, its release or a fenced write was refused): another
    # instance holds a newer token, and this run's late writes were or will be rejected.
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class Job:
    """A job definition and its scheduling state.

    ``version`` is bumped by every take: the value after a take is that run's fencing token.
    ``holder`` and ``lease_until_ms`` say which instance runs it and until when its lease
    holds (``None``/0 when nobody does).
    """

    id: int
    name: str
    cron: str
    executor_kind: str
    executor_config: Mapping[str, Any]
    status: JobStatus
    version: int
    next_run_ms: int
    holder: str | None
    lease_until_ms: int
    ctime_ms: int
    utime_ms: int


@dataclass(frozen=True, slots=True)
class Lease:
    """What an instance holds after winning a take: the job at that moment and its token."""

    job: Job
    token: int
    holder: str
    lease_until_ms: int
    # The previous holder when this take was a takeover of an expired lease.
    took_over_from: str | None


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a job, as recorded in the history."""

    id: int
    job_id: int
    token: int
    instance: str
    started_ms: int
    ended_ms: int | None
    outcome: Outcome
    error: str


def check_name(name: str) -> str:
    """A job name: 1-128 letters, digits and ``._:-``, starting with a letter or digit."""
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            f"job name must be 1-{MAX_NAME_LENGTH} letters, digits or ._:- "
            "starting with a letter or digit",
            metadata={"field": "name"},
        )
    return name


def check_cron(expression: str) -> Schedule:
    """The parsed expression; ``SCHEDULER_INVALID_CRON`` naming the bad cron field."""
    try:
        return parse(expression)
    except CronError as exc:
        metadata = {"field": "cron"}
        if exc.field:
            metadata["cron_field"] = exc.field
        raise SchedulerInvalidArgument(Reason.INVALID_CRON, str(exc), metadata=metadata) from exc


def check_executor_kind(kind: str) -> ExecutorKind:
    """A supported executor kind; ``SCHEDULER_UNKNOWN_EXECUTOR`` otherwise."""
    try:
        return ExecutorKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in ExecutorKind)
        raise SchedulerInvalidArgument(
            Reason.UNKNOWN_EXECUTOR,
            f"unknown executor kind {kind!r} (supported: {known})",
            metadata={"field": "executor_kind"},
        ) from None


def encode_config(config: Mapping[str, Any]) -> str:
    """The executor configuration as the JSON text stored (at most 16 KiB)."""
    try:
        text = json.dumps(dict(config), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            f"executor config must be JSON-serialisable: {exc}",
            metadata={"field": "executor_config"},
        ) from exc
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            f"executor config must be at most {MAX_CONFIG_BYTES} bytes of JSON",
            metadata={"field": "executor_config"},
        )
    return text


def decode_config(text: str) -> dict[str, Any]:
    """The stored JSON text of an executor configuration as a dict."""
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise ValueError(f"executor config is not a JSON object: {text[:80]!r}")
    return value


def history_limit(limit: int) -> int:
    """A validated page size of the history: 0 means the default, at most 500."""
    if limit == 0:
        return DEFAULT_HISTORY_LIMIT
    if limit < 0 or limit > MAX_HISTORY_LIMIT:
        raise SchedulerInvalidArgument(
            Reason.INVALID_JOB,
            f"limit must be 1..{MAX_HISTORY_LIMIT}",
            metadata={"field": "limit"},
        )
    return limit


def error_text(exc: BaseException) -> str:
    """An exception as the history stores it: type and message, truncated."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]
