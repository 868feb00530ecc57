"""``webookctl migrate``: a live table migration (kit/migrator), through its gRPC admin API.

``status``, ``mode``, ``full start|stop`` and ``incr start|stop`` call
``webook.migrator.v1.MigratorService`` on the processes of ``--service`` (``interactive``
by default) that host the migration (docs/migration.md). The API acts on the process
called only, so the commands call each instance themselves: the instances registered in
etcd, or the ``--address`` list (one or more ``HOST:PORT``), each dialled directly.

- ``status``: every instance's mode, double-write units of work in flight, validations and
  fixer (instances that disagree on the mode are pointed out);
- ``mode MODE [--force]``: ``SetMode`` on every instance, so that all replicas switch
  together; a switch skipping a step is refused unless ``--force`` (between
  ``source_first`` and ``destination_first`` the step is ``switching``). A switched process
  holds that mode until the service's live mode setting changes or it restarts, and then
  follows the setting: make a switch durable in the configuration centre (``webookctl
  config set``), which the command reminds;
- ``mode source_first|destination_first --via-switching --why WHY``: the switch between the
  two "first" modes under live writes, through the live setting (durable at every step):
  ``migration_mode=switching``, then ``Status`` on every instance until each reports
  ``switching`` with no unit of work in flight (within ``--drain-timeout``; else the
  setting goes back and the command fails), then ``migration_mode=MODE`` and until every
  instance reports it. Requests that arrive meanwhile wait at the barrier (the service's
  ``migration_switch_wait_seconds``), they do not fail. Needs the configuration centre's
  credentials too (``webookctl config``);
- ``full|incr start [--base SIDE]``: one validation of that kind at a time per migration
  (they share the checkpoints): refused when one already runs on any instance, else
  started on the first instance (by instance id; ``--address`` picks another);
- ``full|incr stop``: stopped on every instance where one runs.

The methods accept the operator's certificate only (``spiffe://webook/operator``;
``--tls-cert``/``--tls-key`` with the CA, ``--tls-ca``), as ``webookctl jobs``. A command
that did not happen on every instance it meant fails (exit status 1) with one line saying
what each instance answered; ``status`` fails only when no instance answered.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import grpc

from kit.grpcx.errors import app_error_from_rpc
from kit.liveconfig import ConfigStore
from kit.migrator.mode import Mode
from kit.registry import EtcdRegistry
from kit.security.identity import check_name
from kit.security.tls import mtls_channel_factory
from webook.migrator.v1 import migrator_pb2, migrator_pb2_grpc
from webookctl.command import Context, command_group, leaf, operator_name
from webookctl.config import Schema, _store
from webookctl.errors import CommandFailed, UsageError
from webookctl.output import Outcome, moment, table
from webookctl.remote import client_tls, registry_config
from webookctl.settings import CtlSettings

DEFAULT_SERVICE: Final = "interactive"
# The identity whose certificate MigratorService accepts (its proto's callers).
OPERATOR: Final = "operator"
# The modes in migration order, as SetMode spells them.
MODES: Final = tuple(mode.value for mode in Mode)
SIDES: Final = {
    "source": migrator_pb2.SIDE_SOURCE,
    "destination": migrator_pb2.SIDE_DESTINATION,
}
# The live setting a service follows its mode from (services/interactive/settings.py).
MODE_SETTING: Final = "migration_mode"
SWITCHING: Final = Mode.SWITCHING.value
# The two modes --via-switching goes between, each to the other.
FIRSTS: Final = {
    Mode.SOURCE_FIRST.value: Mode.DESTINATION_FIRST.value,
    Mode.DESTINATION_FIRST.value: Mode.SOURCE_FIRST.value,
}
# How often --via-switching reads every instance's status while it waits.
POLL_S: Final = 0.05
# Command word -> (validation kind, the word the output uses).
KINDS: Final = {
    "full": (migrator_pb2.VALIDATION_KIND_FULL, "full"),
    "incr": (migrator_pb2.VALIDATION_KIND_INCREMENTAL, "incremental"),
}

# What a status code most likely means here, added to its message.
HINTS: Final = {
    grpc.StatusCode.PERMISSION_DENIED: (
        f" (it accepts the {OPERATOR} certificate only: --tls-cert/--tls-key)"
    ),
    grpc.StatusCode.UNIMPLEMENTED: " (that process hosts no migration: none is configured)",
}

if TYPE_CHECKING:
    from webook.migrator.v1.migrator_pb2_grpc import MigratorServiceAsyncStub as Stub

T = TypeVar("T")


@dataclass(frozen=True)
class Instance:
    """One process to call: its registry id (the address itself with ``--address``)."""

    id: str
    address: str

    @property
    def label(self) -> str:
        """How messages name it."""
        return self.address if self.id == self.address else f"{self.id} at {self.address}"


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What one instance answered: ``value``, or the one-line ``error`` of its failure."""

    instance: Instance
    value: T | None = None
    error: str = ""


def _service(args: argparse.Namespace) -> str:
    try:
        return check_name(args.service)
    except ValueError as exc:
        raise UsageError(f"--service: {exc}") from exc


async def find_instances(settings: CtlSettings, service: str, address: str) -> list[Instance]:
    """The instances to call: ``address`` (``HOST:PORT[,...]``), else ``service``'s
    instances registered in etcd now, by instance id."""
    if address:
        addresses = [a.strip() for a in address.split(",") if a.strip()]
        if not addresses:
            raise UsageError("--address: no HOST:PORT given")
        return [Instance(a, a) for a in dict.fromkeys(addresses)]
    config = registry_config(settings, service)
    endpoint = config.endpoint
    registry = EtcdRegistry(config)
    try:
        discovery = await registry.discover(service)
        listed, found = discovery.listed, discovery.instances()
    finally:
        await registry.close()
    if not listed:
        raise CommandFailed(
            f"etcd at {endpoint} did not list the instances of {service} within "
            f"{settings.timeout:g} s"
        )
    if not found:
        raise CommandFailed(
            f"no instance of {service} is registered in etcd at {endpoint} "
            f"(prefix {settings.registry_prefix})"
        )
    return [Instance(i.instance_id, i.addr) for i in found]


class Caller:
    """Calls ``MigratorService`` on one instance after another, each on its own channel."""

    def __init__(self, settings: CtlSettings, service: str) -> None:
        self._service = service
        self._timeout = settings.timeout
        tls = client_tls(settings)
        self._open: Callable[[str], grpc.aio.Channel] = (
            mtls_channel_factory(service, tls) if tls is not None else grpc.aio.insecure_channel
        )

    async def call(
        self,
        instance: Instance,
        method: str,
        call: Callable[[Stub, float], Awaitable[T]],
    ) -> Answer[T]:
        """``call(stub, timeout)`` on ``instance``; a failure as the answer's ``error``."""
        channel = self._open(instance.address)
        try:
            stub = migrator_pb2_grpc.MigratorServiceStub(channel)
            return Answer(instance, await call(stub, self._timeout))
        except grpc.aio.AioRpcError as exc:
            error = app_error_from_rpc(exc)
            hint = HINTS.get(exc.code(), "")
            message = " ".join(f"{error.message}{hint}".split())
            return Answer(instance, error=f"{exc.code().name} {error.reason}: {message}")
        finally:
            await channel.close(None)

    async def each(
        self,
        instances: Sequence[Instance],
        method: str,
        call: Callable[[Stub, float], Awaitable[T]],
    ) -> list[Answer[T]]:
        """``call`` on every instance at once; the answers in the instances' order."""
        return list(await asyncio.gather(*(self.call(i, method, call) for i in instances)))


def failure_line(service: str, method: str, answers: Sequence[Answer[Any]]) -> str:
    """One line about a method that failed on some of ``answers``' instances: the error,
    once when every instance gave the same, and which instances succeeded."""
    failed = [a for a in answers if a.error]
    done = [a.instance.label for a in answers if not a.error]
    errors = {a.error for a in failed}
    if len(errors) == 1:
        (error,) = errors
        where = ", ".join(a.instance.label for a in failed)
        line = f"{service} {method}: {error} (on {where})"
    else:
        line = f"{service} {method}: " + "; ".join(f"{a.instance.label}: {a.error}" for a in failed)
    if done:
        line += f"; done on {len(done)} of {len(answers)} instances: {', '.join(done)}"
    return line


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def validation_data(validation: migrator_pb2.ValidationStatus) -> dict[str, Any]:
    """A validation as the ``--json`` document shows it (``ended_ms`` 0 while running)."""
    return {
        "kind": _name(migrator_pb2.ValidationKind, validation.kind, "VALIDATION_KIND_"),
        "base": _name(migrator_pb2.Side, validation.base, "SIDE_"),
        "running": validation.running,
        "rows_checked": validation.rows_checked,
        "differences": validation.differences,
        "checkpoint": validation.checkpoint,
        "started_ms": validation.started_ms,
        "ended_ms": validation.ended_ms,
        "error": validation.error,
    }


def status_data(answer: migrator_pb2.StatusResponse) -> dict[str, Any]:
    """An instance's status as the ``--json`` document shows it."""
    return {
        "migration": answer.migration,
        "tables": list(answer.tables),
        "mode": answer.mode,
        "units_in_flight": answer.units_in_flight,
        "validations": [validation_data(v) for v in answer.validations],
        "fixer": {
            "running": answer.fixer.running,
            "fixed": answer.fixer.fixed,
            "skipped": answer.fixer.skipped,
        },
    }


def _instance_data(instance: Instance) -> dict[str, Any]:
    return {"instance": instance.id, "address": instance.address}


def _validation_state(validation: dict[str, Any]) -> str:
    if validation["running"]:
        return "running"
    return "ended" if not validation["error"] else f"ended: {validation['error']}"


def _status_text(instance: Instance, status: dict[str, Any]) -> str:
    lines = [
        f"instance {instance.label}: migration {status['migration']}, mode {status['mode']}, "
        f"{status['units_in_flight']} units of work in flight, "
        f"tables {', '.join(status['tables']) or '-'}"
    ]
    rows = [
        [
            v["kind"],
            v["base"],
            _validation_state(v),
            str(v["rows_checked"]),
            str(v["differences"]),
            v["checkpoint"] or "-",
            moment(v["started_ms"]) if v["started_ms"] else "-",
            moment(v["ended_ms"]) if v["ended_ms"] else "-",
        ]
        for v in status["validations"]
    ]
    headers = [
        "VALIDATION",
        "BASE",
        "STATE",
        "ROWS",
        "DIFFERENCES",
        "CHECKPOINT",
        "STARTED",
        "ENDED",
    ]
    if rows:
        lines.extend("  " + line for line in table(headers, rows).splitlines())
    else:
        lines.append("  no validation started here")
    fixer = status["fixer"]
    lines.append(
        f"  fixer {'running' if fixer['running'] else 'not running'}: "
        f"{fixer['fixed']} rows fixed, {fixer['skipped']} events skipped"
    )
    return "\n".join(lines)


def _migration(args: argparse.Namespace) -> str:
    return str(args.migration or "")


async def status(context: Context, args: argparse.Namespace) -> Outcome:
    """``migrate status``: the migration on every instance."""
    service = _service(args)
    caller = Caller(context.settings, service)
    instances = await find_instances(context.settings, service, args.address)
    request = migrator_pb2.StatusRequest(migration=_migration(args))
    answers = await caller.each(
        instances, "Status", lambda stub, t: stub.Status(request, timeout=t)
    )
    if all(a.error for a in answers):
        raise CommandFailed(failure_line(service, "Status", answers))
    documents: list[dict[str, Any]] = []
    texts: list[str] = []
    for answer in answers:
        if answer.value is None:
            documents.append({**_instance_data(answer.instance), "error": answer.error})
            texts.append(f"instance {answer.instance.label}: failed: {answer.error}")
            continue
        data = status_data(answer.value)
        documents.append({**_instance_data(answer.instance), "status": data})
        texts.append(_status_text(answer.instance, data))
    modes = sorted({d["status"]["mode"] for d in documents if "status" in d})
    if len(modes) > 1:
        texts.append(
            f"the instances disagree on the mode ({', '.join(modes)}): a switch did not reach "
            "them all; run `webookctl migrate mode` again"
        )
    switching = [d for d in documents if d.get("status", {}).get("mode") == SWITCHING]
    if switching and len(switching) == len(documents):
        busy = sum(d["status"]["units_in_flight"] for d in switching)
        texts.append(
            "every instance is switching: "
            + (
                "none has a unit of work in flight, the switch can go on"
                if busy == 0
                else f"{busy} units of work still in flight (of the mode before)"
            )
        )
    return Outcome({"service": service, "instances": documents}, "\n".join(texts))


def durable_hint(service: str, mode: str) -> str:
    """What a switch through the API does not do: survive a restart (the live setting)."""
    return (
        f"these processes hold {mode} until the live mode setting changes or they restart, "
        f"and then follow the setting: set it too, `webookctl config set {service} "
        f'{MODE_SETTING}={mode} --why "..."`'
    )


async def set_mode(context: Context, args: argparse.Namespace) -> Outcome:
    """``migrate mode MODE``: SetMode on every instance (``--via-switching``: the barrier)."""
    if args.via_switching:
        return await switch_via_barrier(context, args)
    service = _service(args)
    caller = Caller(context.settings, service)
    instances = await find_instances(context.settings, service, args.address)
    request = migrator_pb2.SetModeRequest(
        migration=_migration(args), mode=args.mode, force=args.force
    )
    answers = await caller.each(
        instances, "SetMode", lambda stub, t: stub.SetMode(request, timeout=t)
    )
    if any(a.error for a in answers):
        line = failure_line(service, "SetMode", answers)
        refused = "MIGRATOR_MODE_REFUSED" in line and not args.force
        hint = ""
        if refused:
            hint = (
                "; between the two first modes under writes: --via-switching"
                if args.mode in FIRSTS
                else "; --force makes a switch skipping a step"
            )
        raise CommandFailed(line + hint)
    switched = [
        {**_instance_data(a.instance), "previous": a.value.previous, "mode": a.value.mode}
        for a in answers
        if a.value is not None
    ]
    rows = [[s["instance"], s["address"], s["previous"], s["mode"]] for s in switched]
    hint = durable_hint(service, args.mode)
    text = "\n".join(
        [
            f"{service}: mode {args.mode} on {len(switched)} instance(s)",
            table(["INSTANCE", "ADDRESS", "BEFORE", "NOW"], rows),
            hint,
        ]
    )
    data = {"service": service, "mode": args.mode, "instances": switched, "durable": hint}
    return Outcome(data, text)


class _ModeSetting:
    """Writes one service's live mode setting, checked as ``config set`` checks it, over
    one open connection to the configuration centre (the barrier is up between writes)."""

    def __init__(
        self, store: ConfigStore, env: str, service: str, args: argparse.Namespace
    ) -> None:
        self._store = store
        self._env = env
        self._service = service
        self._schema = Schema(service)
        self._who = operator_name(args.who)
        self._why = f"{args.why} (migrate mode {args.mode} --via-switching)"

    async def write(self, mode: str) -> int:
        """Set it to ``mode``; the configuration's new version."""
        changes = {MODE_SETTING: mode}
        current, _ = await self._store.get(self._env, self._service)
        self._schema.check(current, changes)
        record = await self._store.set(
            self._env,
            self._service,
            changes,
            who=self._who,
            why=self._why,
            validate=self._schema.check_map,
        )
        return record.version


Statuses = list[Answer[migrator_pb2.StatusResponse]]


async def _wait_every(
    caller: Caller,
    instances: Sequence[Instance],
    request: migrator_pb2.StatusRequest,
    condition: Callable[[migrator_pb2.StatusResponse], bool],
    within_s: float,
) -> tuple[bool, Statuses]:
    """``Status`` on every instance until each answer meets ``condition`` (an instance that
    fails to answer does not); whether they all did within ``within_s``, and the answers."""
    deadline = time.monotonic() + within_s
    while True:
        answers = await caller.each(
            instances, "Status", lambda stub, t: stub.Status(request, timeout=t)
        )
        if all(a.value is not None and condition(a.value) for a in answers):
            return True, answers
        if time.monotonic() >= deadline:
            return False, answers
        await asyncio.sleep(POLL_S)


def _state_line(answers: Statuses) -> str:
    return ", ".join(
        f"{a.instance.label}: "
        + (f"{a.value.mode} ({a.value.units_in_flight} in flight)" if a.value else a.error)
        for a in answers
    )


async def switch_via_barrier(context: Context, args: argparse.Namespace) -> Outcome:
    """``migrate mode source_first|destination_first --via-switching``: the live setting to
    ``switching``, every instance drained, then to the mode (module docstring)."""
    service = _service(args)
    target = args.mode
    origin = FIRSTS.get(target)
    if origin is None:
        raise UsageError(f"--via-switching goes to {' or '.join(FIRSTS)}, not {target}")
    if not args.why:
        raise UsageError("--via-switching writes the live mode setting: give --why")
    if args.force:
        raise UsageError("--via-switching and --force do not go together")
    context.require_env()
    caller = Caller(context.settings, service)
    instances = await find_instances(context.settings, service, args.address)
    request = migrator_pb2.StatusRequest(migration=_migration(args))
    before = await caller.each(instances, "Status", lambda stub, t: stub.Status(request, timeout=t))
    if any(a.error for a in before):
        raise CommandFailed(failure_line(service, "Status", before) + "; nothing switched")
    modes = {a.value.mode for a in before if a.value is not None}
    if not modes <= {origin, SWITCHING, target}:
        raise CommandFailed(
            f"{service}: --via-switching to {target} goes from {origin}; the instances are in "
            f"{', '.join(sorted(modes))} ({_state_line(before)}); nothing switched"
        )
    env = context.require_env()
    async with _store(context) as store:
        setting = _ModeSetting(store, env, service, args)
        versions = [await setting.write(SWITCHING)]
        started = time.monotonic()
        drained, answers = await _wait_every(
            caller,
            instances,
            request,
            lambda s: s.mode == SWITCHING and s.units_in_flight == 0,
            args.drain_timeout,
        )
        if not drained:
            # Nothing ran in the other mode yet: going back is safe, and frees the waiting.
            await setting.write(origin)
            raise CommandFailed(
                f"{service}: not every instance was switching with nothing in flight within "
                f"{args.drain_timeout:g} s ({_state_line(answers)}); the live mode setting is "
                f"back to {origin}"
            )
        drained_s = time.monotonic() - started
        versions.append(await setting.write(target))
    done, answers = await _wait_every(
        caller, instances, request, lambda s: s.mode == target, context.settings.timeout
    )
    if not done:
        raise CommandFailed(
            f"{service}: the live mode setting is {target}, but not every instance reports it "
            f"yet ({_state_line(answers)}): `webookctl migrate status`"
        )
    held_s = time.monotonic() - started
    rows = [
        [
            a.instance.id,
            a.instance.address,
            b.value.mode if b.value else "-",
            a.value.mode if a.value else "-",
        ]
        for b, a in zip(before, answers, strict=True)
    ]
    text = "\n".join(
        [
            f"{service}: mode {target} on {len(answers)} instance(s), through {SWITCHING} "
            f"(drained in {drained_s:.2f} s, switched in {held_s:.2f} s; live setting "
            f"versions {', '.join(str(v) for v in versions)})",
            table(["INSTANCE", "ADDRESS", "BEFORE", "NOW"], rows),
        ]
    )
    data = {
        "service": service,
        "mode": target,
        "via": SWITCHING,
        "drained_s": round(drained_s, 3),
        "switched_s": round(held_s, 3),
        "versions": versions,
        "instances": [
            {
                **_instance_data(a.instance),
                "previous": b.value.mode if b.value else "",
                "mode": a.value.mode if a.value else "",
            }
            for b, a in zip(before, answers, strict=True)
        ],
    }
    return Outcome(data, text)


def _running(answer: Answer[migrator_pb2.StatusResponse], kind: int) -> bool:
    status = answer.value
    return status is not None and any(v.running and v.kind == kind for v in status.validations)


async def start(context: Context, args: argparse.Namespace) -> Outcome:
    """``migrate full|incr start``: start a validation on one instance."""
    service = _service(args)
    kind, word = KINDS[args.kind]
    caller = Caller(context.settings, service)
    instances = await find_instances(context.settings, service, args.address)
    migration = _migration(args)
    status_request = migrator_pb2.StatusRequest(migration=migration)

    def read(stub: Stub, t: float) -> Awaitable[migrator_pb2.StatusResponse]:
        return stub.Status(status_request, timeout=t)

    # One validation of a kind at a time per migration: they share the checkpoints.
    statuses = await caller.each(instances, "Status", read)
    if any(a.error for a in statuses):
        raise CommandFailed(
            failure_line(service, "Status", statuses)
            + f"; cannot tell whether a {word} validation already runs there (--address "
            "names the instances to consider)"
        )
    busy = [a for a in statuses if _running(a, kind)]
    if busy:
        name = busy[0].value.migration if busy[0].value is not None else migration
        raise CommandFailed(
            f"the {word} validation of {name} already runs on "
            f"{', '.join(a.instance.label for a in busy)}: "
            f"`webookctl migrate {args.kind} stop` first"
        )
    target = instances[0]
    request = migrator_pb2.StartValidationRequest(
        migration=migration,
        kind=kind,
        base=SIDES.get(args.base or "", migrator_pb2.SIDE_UNSPECIFIED),
    )
    started = await caller.call(
        target, "StartValidation", lambda stub, t: stub.StartValidation(request, timeout=t)
    )
    if started.error:
        raise CommandFailed(failure_line(service, "StartValidation", [started]))
    # The base the process chose when none was given, and the run's first numbers.
    after = await caller.call(target, "Status", read)
    found = [
        validation_data(v)
        for v in (after.value.validations if after.value is not None else ())
        if v.kind == kind
    ]
    validation = found[0] if found else None
    name = after.value.migration if after.value is not None else migration
    data = {
        "service": service,
        "migration": name,
        **_instance_data(target),
        "validation": validation,
    }
    base = f" (base: {validation['base']})" if validation else ""
    text = f"{word} validation of {name or 'the migration'} started on {target.label}{base}"
    return Outcome(data, text)


async def stop(context: Context, args: argparse.Namespace) -> Outcome:
    """``migrate full|incr stop``: stop the validation wherever it runs."""
    service = _service(args)
    kind, word = KINDS[args.kind]
    caller = Caller(context.settings, service)
    instances = await find_instances(context.settings, service, args.address)
    migration = _migration(args)
    status_request = migrator_pb2.StatusRequest(migration=migration)
    statuses = await caller.each(
        instances, "Status", lambda stub, t: stub.Status(status_request, timeout=t)
    )
    running = [a.instance for a in statuses if _running(a, kind)]
    request = migrator_pb2.StopValidationRequest(migration=migration, kind=kind)
    stopped = await caller.each(
        running, "StopValidation", lambda stub, t: stub.StopValidation(request, timeout=t)
    )
    # An instance whose status failed may be running one: the stop did not happen there.
    answers: list[Answer[Any]] = [*(a for a in statuses if a.error), *stopped]
    if any(a.error for a in answers):
        raise CommandFailed(failure_line(service, "StopValidation", answers))
    data = {
        "service": service,
        "kind": word,
        "stopped": [_instance_data(a.instance) for a in stopped],
    }
    if not stopped:
        text = f"no {word} validation runs on the {len(instances)} instance(s) of {service}"
    else:
        where = ", ".join(a.instance.label for a in stopped)
        text = f"{word} validation stopped on {where} (its checkpoint stays: a start resumes it)"
    return Outcome(data, text)


NEEDS = (
    "\n\nNeeds the operator certificate (a local stack's: .run/pki/operator.pem and\n"
    "operator-key.pem, with .run/pki/ca.pem)."
)


def _targets(parser: argparse.ArgumentParser) -> None:
    """The options every ``migrate`` command takes: which processes, which migration."""
    parser.add_argument(
        "--service",
        default=DEFAULT_SERVICE,
        help=f"the service whose processes host the migration (default {DEFAULT_SERVICE})",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT[,...]",
        default="",
        help="the instances to call (default: every instance registered in etcd)",
    )
    parser.add_argument(
        "--migration",
        metavar="NAME",
        default="",
        help="the migration (default: the process's only one)",
    )


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``migrate status|mode|full start|full stop|incr start|incr stop``."""
    group = command_group(
        subcommands, "migrate", "a live table migration: its mode, validations and fixer"
    )

    _targets(
        leaf(
            group,
            "status",
            "The migration on every instance: mode, validations, fixer." + NEEDS,
            status,
            common,
        )
    )

    mode = leaf(
        group,
        "mode",
        "Switch the double-write mode on every instance.\n\n"
        "Modes, one step at a time: source_only → source_first → switching →\n"
        "destination_first → destination_only (docs/migration.md). A switch skipping a step\n"
        "is refused unless --force. A switched process holds the mode until the service's\n"
        "live mode setting changes or it restarts, then follows the setting: change that\n"
        "too (webookctl config set <service> migration_mode=MODE).\n\n"
        "--via-switching (to source_first or destination_first, under live writes): the\n"
        "live setting to switching, until every instance reports it with no unit of work\n"
        "in flight, then to MODE; needs --why and the configuration centre's credentials." + NEEDS,
        set_mode,
        common,
    )
    mode.add_argument("mode", choices=MODES, help="the mode to switch to")
    mode.add_argument("--force", action="store_true", help="allow a switch skipping a step")
    mode.add_argument(
        "--via-switching",
        action="store_true",
        help="switch between the first modes through the barrier, with the live setting",
    )
    mode.add_argument(
        "--drain-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long --via-switching waits for every instance to drain (default 2)",
    )
    mode.add_argument("--why", help="why (recorded with the live setting; --via-switching)")
    mode.add_argument("--who", help="who (recorded; default: your OS user)")
    _targets(mode)

    for word, (_, name) in KINDS.items():
        kind = command_group(group, word, f"the {name} validation: start or stop")
        begin = leaf(
            kind,
            "start",
            f"Start a {name} validation on one instance.\n\n"
            "Refused when one already runs on any instance. It runs on the first instance\n"
            "by id (or the first --address); the differences it finds go to the fixer." + NEEDS,
            start,
            common,
        )
        begin.set_defaults(kind=word)
        begin.add_argument(
            "--base",
            choices=tuple(SIDES),
            help="the side taken as right (default: the side the current mode writes first)",
        )
        _targets(begin)
        end = leaf(
            kind,
            "stop",
            f"Stop the {name} validation wherever it runs (its checkpoint stays)." + NEEDS,
            stop,
            common,
        )
        end.set_defaults(kind=word)
        _targets(end)
