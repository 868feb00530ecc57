"""Remote executors: an ``http`` job POSTs to a URL, a ``grpc`` job calls a unary method of a
service; both send the run's fencing token for the callee to check (docs/scheduler.md).

- :class:`HttpExecutor`: ``POST url`` with headers ``X-Webook-Fencing-Token``,
  ``X-Webook-Job``, ``X-Webook-Scheduler-Instance`` and a JSON body (job, job id, token,
  scheduled time, instance, the config's ``body``). 2xx: ok. 409: the callee refused a
  stale token (:class:`~services.scheduler.executors.StaleToken`, the run is ``fenced``).
  Other 4xx: failed at once. 5xx, connection errors and timeouts: retried ``retries``
  times with a jittered exponential backoff, each retry only while this instance is still
  the holder (else fenced), then failed. One ``httpx.AsyncClient`` per process.
- :class:`GrpcExecutor`: the method through the process's
  :class:`~kit.grpcx.client.ServiceClients` (balanced channel, mutual TLS, governance) with
  the token in metadata (:mod:`kit.grpcx.fencing`); a ``FAILED_PRECONDITION`` whose reason
  ends in ``STALE_FENCING_TOKEN`` is fenced, any other error fails the run (no retry).

:func:`check_grpc` validates a ``grpc`` job's config against the protos when it is added:
the method must be a loaded unary method whose ``(webook.contracts.v1.callers)`` admits the
scheduler, and ``request`` must parse into its input message.

Metrics: ``webook_scheduler_remote_calls_total{kind,outcome}`` (one per attempt) and
``webook_scheduler_remote_call_duration_seconds{kind}``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from kit.governance.authz import method_policy
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import app_error_from_rpc
from kit.grpcx.fencing import fencing_metadata, is_stale_token_refusal
from services.scheduler.domain import (
    ExecutorKind,
    GrpcCall,
    HttpCall,
    config_error,
    grpc_call,
    http_call,
)
from services.scheduler.errors import Reason
from services.scheduler.executors import Executor, RunContext, StaleToken

logger = logging.getLogger(__name__)

SCHEDULER_CALLER: Final = "scheduler"
"""The workload a ``grpc`` job's method must admit: this process's identity under mTLS."""
FENCING_TOKEN_HEADER: Final = "X-Webook-Fencing-Token"
JOB_HEADER: Final = "X-Webook-Job"
INSTANCE_HEADER: Final = "X-Webook-Scheduler-Instance"
# How much of an HTTP answer's body an error message quotes.
_SNIPPET_BYTES: Final = 300
# The protos of our services: webook.<pkg>.v<n>, generated as webook/<pkg>/v<n>/<pkg>_pb2.py.
_OUR_PACKAGE: Final = re.compile(r"webook\.([a-z][a-z0-9_]*)\.v[0-9]+")


class CallOutcome(StrEnum):
    """How one attempt of a remote call ended (the ``outcome`` label)."""

    OK = "ok"
    # The callee refused the token as stale (HTTP 409, gRPC STALE_FENCING_TOKEN).
    FENCED = "fenced"
    # Refused for another reason (other 4xx, gRPC client-side codes): not retried.
    REFUSED = "refused"
    # HTTP 5xx, gRPC INTERNAL/UNKNOWN or a service's own UNAVAILABLE.
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    # Could not connect or lost the connection (gRPC: UNAVAILABLE with no service reason).
    UNREACHABLE = "unreachable"


REMOTE_CALLS: Final = Counter(
    "webook_scheduler_remote_calls_total",
    "Attempts of remote executor calls, by executor kind and outcome.",
    ["kind", "outcome"],
)
REMOTE_CALL_SECONDS: Final = Histogram(
    "webook_scheduler_remote_call_duration_seconds",
    "Wall time of one attempt of a remote executor call, by executor kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
# Every series exported at 0 from the start, so that rates exist before the first call.
for _kind in (ExecutorKind.HTTP, ExecutorKind.GRPC):
    REMOTE_CALL_SECONDS.labels(_kind.value)
    for _outcome in CallOutcome:
        REMOTE_CALLS.labels(_kind.value, _outcome.value)


class RemoteCallFailed(Exception):
    """A remote executor's call failed; the message says what the callee answered."""


def _observe(kind: ExecutorKind, outcome: CallOutcome, started: float) -> float:
    """Count one attempt; its duration in seconds."""
    took = time.perf_counter() - started
    REMOTE_CALLS.labels(kind.value, outcome.value).inc()
    REMOTE_CALL_SECONDS.labels(kind.value).observe(took)
    return took


def _run_fields(context: RunContext, kind: ExecutorKind, target: str) -> dict[str, Any]:
    return {
        "job": context.job_name,
        "token": context.token,
        "instance": context.instance,
        "kind": kind.value,
        "target": target,
    }


# HTTP -------------------------------------------------------------------------------------


def display_url(url: str) -> str:
    """``url`` as logs and errors show it: no user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def http_client() -> httpx.AsyncClient:
    """The process's client for ``http`` jobs (redirects are not followed: a 3xx fails)."""
    return httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": "webook-scheduler"})


class HttpExecutor:
    """Runs ``http`` jobs with one shared client (see the module)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        backoff_s: float = 0.2,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``backoff_s``: the first retry's delay, doubled at each further one and spread
        over 0.5x-1.5x by ``jitter`` (uniform in [0, 1))."""
        self._client = client
        self._backoff_s = backoff_s
        self._jitter = jitter

    async def __call__(self, context: RunContext) -> None:
        """POST once, retrying what may pass the next time; see the module."""
        call = http_call(context.config)
        target = display_url(call.url)
        fields = _run_fields(context, ExecutorKind.HTTP, target)
        headers = {
            FENCING_TOKEN_HEADER: str(context.token),
            JOB_HEADER: context.job_name,
            INSTANCE_HEADER: context.instance,
        }
        payload = {
            "job": context.job_name,
            "job_id": context.job_id,
            "token": context.token,
            "scheduled_ms": context.scheduled_ms,
            "instance": context.instance,
            "body": dict(call.body),
        }
        error = ""
        for attempt in range(call.retries + 1):
            if attempt:
                delay = self._backoff_s * 2 ** (attempt - 1) * (0.5 + self._jitter())
                logger.warning(
                    "http job call failed; retrying",
                    extra={
                        **fields,
                        "attempt": attempt,
                        "error": error,
                        "retry_in_ms": round(delay * 1000),
                    },
                )
                await asyncio.sleep(delay)
                if not await context.still_holder():
                    raise StaleToken(
                        target, context.token, None, detail="lease lost; retries stopped"
                    )
            outcome, error = await self._attempt(call, target, headers, payload, fields)
            if outcome is CallOutcome.OK:
                return
            if outcome is CallOutcome.FENCED:
                raise StaleToken(target, context.token, None, detail=error)
            if outcome is CallOutcome.REFUSED:
                raise RemoteCallFailed(error)
        attempts = call.retries + 1
        raise RemoteCallFailed(f"{error} ({attempts} attempt{'s' if attempts > 1 else ''})")

    async def _attempt(
        self,
        call: HttpCall,
        target: str,
        headers: Mapping[str, str],
        payload: Mapping[str, Any],
        fields: Mapping[str, Any],
    ) -> tuple[CallOutcome, str]:
        """One POST: its outcome and, unless ok, what went wrong."""
        started = time.perf_counter()
        status = 0
        snippet = b""
        try:
            async with asyncio.timeout(call.timeout_s):
                async with self._client.stream(
                    "POST", call.url, json=payload, headers=headers, timeout=call.timeout_s
                ) as response:
                    status = response.status_code
                    if not response.is_success:
                        async for chunk in response.aiter_bytes():
                            snippet += chunk
                            if len(snippet) >= _SNIPPET_BYTES:
                                break
        except (TimeoutError, httpx.TimeoutException):
            outcome = CallOutcome.TIMEOUT
            error = f"POST {target}: no answer within {call.timeout_s:g} s"
        except httpx.TransportError as exc:
            outcome = CallOutcome.UNREACHABLE
            error = f"POST {target}: {type(exc).__name__}: {exc}"
        else:
            text = snippet[:_SNIPPET_BYTES].decode("utf-8", "replace").strip()
            error = f"POST {target}: HTTP {status}" + (f": {text}" if text else "")
            if 200 <= status < 300:
                outcome, error = CallOutcome.OK, ""
            elif status == 409:
                outcome = CallOutcome.FENCED
            elif status >= 500:
                outcome = CallOutcome.SERVER_ERROR
            else:
                outcome = CallOutcome.REFUSED
        took = _observe(ExecutorKind.HTTP, outcome, started)
        logger.log(
            logging.INFO if outcome is CallOutcome.OK else logging.WARNING,
            "http job call answered" if status else "http job call got no answer",
            extra={
                **fields,
                "outcome": outcome.value,
                "status": status,
                "error": error,
                "duration_ms": round(took * 1000, 1),
            },
        )
        return outcome, error


# gRPC -------------------------------------------------------------------------------------


def resolve_method(call: GrpcCall) -> MethodDescriptor:
    """The descriptor of ``call``'s method, loading our service's proto module first;
    ``SCHEDULER_UNKNOWN_EXECUTOR`` when no loaded proto has it."""
    package = call.proto_service.rpartition(".")[0]
    ours = _OUR_PACKAGE.fullmatch(package)
    if ours is not None:
        try:
            importlib.import_module(f"{package}.{ours[1]}_pb2")
        except ModuleNotFoundError:
            pass  # not one of our protos: the lookup below says so
    try:
        service = descriptor_pool.Default().FindServiceByName(call.proto_service)
    except KeyError:
        raise config_error(
            ExecutorKind.GRPC,
            "method",
            f"no proto service {call.proto_service!r} is known",
            Reason.UNKNOWN_EXECUTOR,
        ) from None
    method = service.methods_by_name.get(call.method)
    if method is None:
        known = ", ".join(sorted(service.methods_by_name))
        raise config_error(
            ExecutorKind.GRPC,
            "method",
            f"{call.proto_service} has no method {call.method!r} (methods: {known})",
            Reason.UNKNOWN_EXECUTOR,
        )
    return method


def request_message(call: GrpcCall, method: MethodDescriptor) -> Message:
    """``call.request`` as the method's input message; ``SCHEDULER_INVALID_JOB`` if it does
    not parse (unknown field, wrong type)."""
    message: Message = message_factory.GetMessageClass(method.input_type)()
    try:
        json_format.ParseDict(dict(call.request), message)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise config_error(
            ExecutorKind.GRPC,
            "request",
            f"'request' is not a {method.input_type.full_name}: {exc}",
        ) from exc
    return message


def _resolved(config: Mapping[str, Any]) -> tuple[GrpcCall, MethodDescriptor, Message]:
    """The call, its method and its request message (see :func:`check_grpc`)."""
    call = grpc_call(config)
    method = resolve_method(call)
    if method.client_streaming or method.server_streaming:
        raise config_error(
            ExecutorKind.GRPC, "method", f"{call.path} streams: only unary methods can be jobs"
        )
    admitted = method_policy(method).admitted
    if SCHEDULER_CALLER not in admitted:
        callers = ", ".join(sorted(admitted)) or "nobody"
        raise config_error(
            ExecutorKind.GRPC,
            "method",
            f"{call.path} does not admit the scheduler as a caller (its proto's "
            f"(webook.contracts.v1.callers) admits: {callers})",
        )
    return call, method, request_message(call, method)


def check_grpc(config: Mapping[str, Any]) -> GrpcCall:
    """A ``grpc`` job's config validated against the protos (see the module)."""
    return _resolved(config)[0]


def check_remote(kind: ExecutorKind, config: Mapping[str, Any]) -> None:
    """Validate the config of a remote ``kind``; ``SchedulerInvalidArgument`` naming the key."""
    if kind is ExecutorKind.HTTP:
        http_call(config)
    elif kind is ExecutorKind.GRPC:
        check_grpc(config)


def _grpc_outcome(exc: grpc.aio.AioRpcError) -> CallOutcome:
    code = exc.code()
    if is_stale_token_refusal(exc):
        return CallOutcome.FENCED
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CallOutcome.TIMEOUT
    if code == grpc.StatusCode.UNAVAILABLE:
        # A service's own UNAVAILABLE carries its ErrorInfo reason; the transport's does not.
        error = app_error_from_rpc(exc)
        return CallOutcome.UNREACHABLE if error.reason == code.name else CallOutcome.SERVER_ERROR
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS):
        return CallOutcome.SERVER_ERROR
    return CallOutcome.REFUSED


class GrpcExecutor:
    """Runs ``grpc`` jobs through the process's service clients (see the module)."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        # One multicallable per (service, method): a balanced channel keeps state per
        # multicallable for as long as it lives, so one made per run would pile up.
        self._callables: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    async def _callable(
        self, call: GrpcCall, method: MethodDescriptor
    ) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        key = (call.service, call.path)
        found = self._callables.get(key)
        if found is None:
            channel = await self._clients.channel(call.service)
            response_class = message_factory.GetMessageClass(method.output_type)
            found = channel.unary_unary(
                call.path,
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            self._callables[key] = found
        return found

    async def __call__(self, context: RunContext) -> None:
        """Call the job's method once under the run's token; see the module."""
        call, method, request = _resolved(context.config)
        target = f"{call.service}{call.path}"
        fields = _run_fields(context, ExecutorKind.GRPC, target)
        multicallable = await self._callable(call, method)
        started = time.perf_counter()
        try:
            await multicallable(
                request,
                timeout=call.timeout_s,
                metadata=fencing_metadata(context.token, context.job_name),
            )
        except grpc.aio.AioRpcError as exc:
            outcome = _grpc_outcome(exc)
            error = app_error_from_rpc(exc)
            took = _observe(ExecutorKind.GRPC, outcome, started)
            text = f"{call.path} on {call.service}: {exc.code().name}"
            if error.reason != exc.code().name:
                text += f" {error.reason}"
            text += f": {exc.details() or ''}"
            logger.warning(
                "grpc job call failed",
                extra={
                    **fields,
                    "outcome": outcome.value,
                    "error": text,
                    "duration_ms": round(took * 1000, 1),
                },
            )
            if outcome is CallOutcome.FENCED:
                highest = error.metadata.get("highest_token", "")
                raise StaleToken(
                    target,
                    context.token,
                    int(highest) if highest.isdigit() else None,
                    detail=exc.details() or "",
                ) from exc
            raise RemoteCallFailed(text) from exc
        took = _observe(ExecutorKind.GRPC, CallOutcome.OK, started)
        logger.info(
            "grpc job call answered",
            extra={**fields, "outcome": CallOutcome.OK.value, "duration_ms": round(took * 1000, 1)},
        )


def remote_executors(
    *, http: httpx.AsyncClient | None = None, clients: ServiceClients | None = None
) -> dict[ExecutorKind, Executor]:
    """The remote executors a scheduler offers: ``http`` with ``http``, ``grpc`` with
    ``clients`` (a kind left out is recorded as a failed run when a job of it is due)."""
    executors: dict[ExecutorKind, Executor] = {}
    if http is not None:
        executors[ExecutorKind.HTTP] = HttpExecutor(http)
    if clients is not None:
        executors[ExecutorKind.GRPC] = GrpcExecutor(clients)
    return executors
