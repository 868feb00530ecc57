"""Jobs, leases and executions as plain data, and the rules a job definition must follow."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from services.scheduler.cron import CronError, Schedule, parse
from services.scheduler.errors import Reason, SchedulerInvalidArgument

MAX_NAME_LENGTH: Final = 128
MAX_CONFIG_BYTES: Final = 16_384
MAX_ERROR_LENGTH: Final = 2000
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 500
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")

HTTP_DEFAULT_TIMEOUT_S: Final = 10.0
HTTP_MAX_TIMEOUT_S: Final = 300.0
HTTP_DEFAULT_RETRIES: Final = 2
HTTP_MAX_RETRIES: Final = 5
MAX_URL_LENGTH: Final = 2048
GRPC_DEFAULT_TIMEOUT_S: Final = 60.0
GRPC_MAX_TIMEOUT_S: Final = 3600.0
# A service name as discovery knows it ("ranking").
_SERVICE: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# "<full proto service>/<method>": "webook.ranking.v1.RankingService/RunRanking".
_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_METHOD: Final = re.compile(rf"(?P<service>(?:{_IDENT}\.)+{_IDENT})/(?P<method>{_IDENT})")


class JobStatus(IntEnum):
    """Whether the schedulers take the job when it is due."""

    ACTIVE = 1
    PAUSED = 2


class ExecutorKind(StrEnum):
    """How a job runs (docs/scheduler.md, "Executor kinds").

    ``local``: a function registered in the scheduler process; ``http``: a POST to a URL;
    ``grpc``: a unary method of a service found through discovery. The remote kinds send
    the run's fencing token for the callee to check.
    """

    LOCAL = "local"
    HTTP = "http"
    GRPC = "grpc"


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


@dataclass(frozen=True, slots=True)
class HttpCall:
    """An ``http`` job's validated config: POST to ``url``, each attempt within ``timeout_s``,
    up to ``retries`` more attempts on 5xx, timeouts and connection errors."""

    url: str
    timeout_s: float
    retries: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """A ``grpc`` job's validated config: ``proto_service``/``method`` of the service
    discovery knows as ``service``, with ``request`` (the JSON form of the input message)."""

    service: str
    proto_service: str
    method: str
    request: Mapping[str, Any]
    timeout_s: float

    @property
    def path(self) -> str:
        """``/package.Service/Method``, the name a server sees."""
        return f"/{self.proto_service}/{self.method}"


def config_error(
    kind: ExecutorKind, key: str, message: str, reason: Reason = Reason.INVALID_JOB
) -> SchedulerInvalidArgument:
    """A refusal of ``kind``'s executor config; ``metadata["config_field"]`` names the key."""
    return SchedulerInvalidArgument(
        reason,
        f"{kind.value} executor config: {message}",
        metadata={"field": "executor_config", "config_field": key},
    )


def _only_keys(kind: ExecutorKind, config: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise config_error(
            kind,
            unknown[0],
            f"unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})",
        )


def _seconds(
    kind: ExecutorKind, config: Mapping[str, Any], key: str, default: float, maximum: float
) -> float:
    value = config.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise config_error(
            kind, key, f"{key!r} must be a number of seconds, 0 < {key} <= {maximum:g}"
        )
    return float(value)


def _object(kind: ExecutorKind, config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key, {})
    if not isinstance(value, dict):
        raise config_error(kind, key, f"{key!r} must be a JSON object")
    return value


def http_call(config: Mapping[str, Any]) -> HttpCall:
    """The validated config of an ``http`` job; ``SCHEDULER_INVALID_JOB`` naming the key.

    ``{"url": "http(s)://host[:port]/path", "timeout_s": 10, "retries": 2, "body": {...}}``:
    only ``url`` is required; 0 < timeout_s <= 300, retries 0..5.
    """
    kind = ExecutorKind.HTTP
    _only_keys(kind, config, ("url", "timeout_s", "retries", "body"))
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise config_error(kind, "url", "'url' is required: the http(s) URL to POST to")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not 0-65535
    except ValueError as exc:
        raise config_error(kind, "url", f"'url' is not a valid URL: {exc}") from exc
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url) or not url.isascii():
        raise config_error(
            kind, "url", f"'url' must be ASCII without spaces, at most {MAX_URL_LENGTH} chars"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise config_error(
            kind, "url", f"'url' must be http:// or https:// with a host, got {url[:80]!r}"
        )
    retries = config.get("retries", HTTP_DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise config_error(kind, "retries", f"'retries' must be an integer 0..{HTTP_MAX_RETRIES}")
    if not 0 <= retries <= HTTP_MAX_RETRIES:
        raise config_error(kind, "retries", f"'retries' must be 0..{HTTP_MAX_RETRIES}")
    return HttpCall(
        url=url,
        timeout_s=_seconds(kind, config, "timeout_s", HTTP_DEFAULT_TIMEOUT_S, HTTP_MAX_TIMEOUT_S),
        retries=retries,
        body=_object(kind, config, "body"),
    )


def grpc_call(config: Mapping[str, Any]) -> GrpcCall:
    """The validated shape of a ``grpc`` job's config; ``SCHEDULER_INVALID_JOB`` naming the key.

    ``{"service": "ranking", "method": "webook.ranking.v1.RankingService/RunRanking",
    "request": {...}, "timeout_s": 60}``: ``service`` and ``method`` are required; 0 <
    timeout_s <= 3600. Whether the method exists, may be called by the scheduler and takes
    ``request`` is checked against the protos (:func:`services.scheduler.remote.check_grpc`).
    """
    kind = ExecutorKind.GRPC
    _only_keys(kind, config, ("service", "method", "request", "timeout_s"))
    service = config.get("service")
    if not isinstance(service, str) or not _SERVICE.fullmatch(service):
        raise config_error(
            kind,
            "service",
            "'service' is required: the name discovery knows the service by "
            "(lowercase letters, digits, - and _), e.g. 'ranking'",
        )
    method = config.get("method")
    matched = _METHOD.fullmatch(method.removeprefix("/")) if isinstance(method, str) else None
    if matched is None:
        raise config_error(
            kind,
            "method",
            "'method' is required: <full proto service>/<method>, "
            "e.g. 'webook.ranking.v1.RankingService/RunRanking'",
        )
    return GrpcCall(
        service=service,
        proto_service=matched["service"],
        method=matched["method"],
        request=_object(kind, config, "request"),
        timeout_s=_seconds(kind, config, "timeout_s", GRPC_DEFAULT_TIMEOUT_S, GRPC_MAX_TIMEOUT_S),
    )


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
