"""``webookctl config``: the live settings in the configuration centre (:mod:`kit.liveconfig`).

Values live in etcd under ``/webook/config/<env>/<service>/<field>`` as JSON; every change
is recorded with a version, who and why, and can be rolled back. ``set``, ``rollback`` and
``copy`` check the result against the service's settings class
(:mod:`webookctl.schemas`) before anything is written: a key that is not a field, a field
that cannot change at run time, or a value the class refuses ends the command with the
per-key message and exit status 1, and etcd is not touched. The store checks again, inside
its read-compute-write loop, the whole map it is about to write (another operator may have
written in between): the live keys over the class's defaults must still be valid.

``set KEY=VALUE`` reads VALUE as JSON (``5``, ``true``, ``{"a": 1}``, ``"quoted"``) and
takes it as a plain string when it is not JSON (``DEBUG``); ``--unset KEY`` removes a key,
so the process's own value (default, file, environment) applies again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from kit.config import BaseServiceSettings
from kit.liveconfig import (
    DELETE,
    ChangeRecord,
    ConfigInvalid,
    ConfigStore,
    ConfigStoreError,
    UnknownVersion,
    live_fields,
    validate_changes,
)
from kit.liveconfig.schema import check_segment
from webookctl import schemas
from webookctl.command import Context, command_group, leaf, operator_name
from webookctl.errors import CommandFailed, UsageError
from webookctl.output import Outcome, moment, shown, table

ABSENT = "-"


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (key, value): VALUE as JSON, else the plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _settings_type(service: str) -> schemas.SettingsType:
    try:
        cls = schemas.settings_type(service)
    except schemas.UnknownService as exc:
        raise UsageError(str(exc)) from exc
    return cls


def _segment(kind: str, value: str) -> str:
    try:
        return check_segment(kind, value)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _refusal(exc: ConfigInvalid) -> CommandFailed:
    problems = "; ".join(f"{key}: {message}" for key, message in sorted(exc.errors.items()))
    return CommandFailed(f"refused, nothing written: {problems}")


class Schema:
    """A service's settings class and its defaults: what every write is judged by."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.cls = _settings_type(service)
        self.base: BaseServiceSettings = schemas.defaults_of(self.cls)

    def check(self, current: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        """Refuse ``changes`` over ``current`` (every changed key must be live and the
        result valid) before anything is written."""
        try:
            validate_changes(self.cls, self.base, dict(current), dict(changes))
        except ConfigInvalid as exc:
            raise _refusal(exc) from exc

    def check_map(self, after: Mapping[str, Any]) -> None:
        """The store's check of the whole map it is about to write: the live keys laid over
        the defaults must be valid (keys that are not live are the processes' to ignore,
        and were judged when they were changed)."""
        validate_changes(self.cls, self.base, dict(after), {})


def changes_between(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The changes that turn ``current`` into ``wanted`` (:data:`DELETE` for removals)."""
    changes: dict[str, Any] = {
        key: value for key, value in wanted.items() if key not in current or current[key] != value
    }
    changes.update({key: DELETE for key in current if key not in wanted})
    return changes


@asynccontextmanager
async def _store(context: Context) -> AsyncIterator[ConfigStore]:
    """The configuration centre; its failures become one-line :class:`CommandFailed`."""
    settings = context.settings
    try:
        async with ConfigStore.connect(
            settings.etcd_endpoints,
            username=settings.etcd_username,
            password=settings.etcd_password.get_secret_value(),
            timeout_s=settings.timeout,
        ) as store:
            yield store
    except ConfigInvalid as exc:
        # The store's own check, on a map another operator changed since ours was read.
        raise _refusal(exc) from exc
    except UnknownVersion as exc:
        raise CommandFailed(str(exc)) from exc
    except ConfigStoreError as exc:
        # Unreachable, refused credentials, a role without access to the prefix.
        where = ",".join(settings.etcd_endpoints)
        raise CommandFailed(f"configuration centre at {where}: {exc}") from exc


def _record(record: ChangeRecord) -> dict[str, Any]:
    return {
        "version": record.version,
        "revision": record.revision,
        "who": record.who,
        "why": record.why,
        "at_ms": record.at_ms,
        "before": record.before,
        "after": record.after,
    }


def _change_text(record: ChangeRecord) -> str:
    """What a change did, key by key (``key: before → after``)."""
    before, after = record.before, record.after
    parts = [
        f"{key}: {shown(before[key]) if key in before else ABSENT} → "
        f"{shown(after[key]) if key in after else ABSENT}"
        for key in sorted(changes_between(before, after))
    ]
    return "; ".join(parts) or "(no change)"


def _written(record: ChangeRecord, **more: Any) -> dict[str, Any]:
    """The ``--json`` document of a write: where, which version, and what changed."""
    return {
        "env": record.environment,
        "service": record.service,
        "version": record.version,
        "revision": record.revision,
        "values": record.after,
        "changes": {
            key: record.after.get(key)
            for key in sorted(changes_between(record.before, record.after))
        },
        **more,
    }


async def get(context: Context, args: argparse.Namespace) -> Outcome:
    """``config get SERVICE [KEY...] [--live]``."""
    env = _segment("environment", context.require_env())
    schema = Schema(args.service)
    async with _store(context) as store:
        values, version = await store.get(env, args.service)
    if args.keys:
        values = {key: values[key] for key in args.keys if key in values}
    lines = [f"{args.service} in {env}: version {version}"]
    if values:
        lines += [f"  {key} = {shown(values[key])}" for key in sorted(values)]
    else:
        lines.append("  (no remote values: the processes' own settings apply)")
    data: dict[str, Any] = {"env": env, "service": args.service, "version": version}
    data["values"] = values
    if args.live:
        live = sorted(live_fields(schema.cls))
        lines.append("live keys: " + (", ".join(live) or "(none)"))
        data["live_keys"] = live
    return Outcome(data, "\n".join(lines))


def _wanted_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = dict(parse_assignment(text) for text in args.assignments)
    for key in args.unset or ():
        if key in changes:
            raise UsageError(f"{key} is both set and unset")
        changes[key] = DELETE
    if not changes:
        raise UsageError("nothing to change: give KEY=VALUE or --unset KEY")
    return changes


def _version_line(record: ChangeRecord, what: str) -> str:
    return f"{record.service} in {record.environment}: {what}version {record.version}"


async def set_values(context: Context, args: argparse.Namespace) -> Outcome:
    """``config set SERVICE KEY=VALUE... [--unset KEY] --why WHY``."""
    env = _segment("environment", context.require_env())
    schema = Schema(args.service)
    changes = _wanted_changes(args)
    who = operator_name(args.who)
    async with _store(context) as store:
        current, _ = await store.get(env, args.service)
        schema.check(current, changes)
        record = await store.set(
            env, args.service, changes, who=who, why=args.why, validate=schema.check_map
        )
    lines = [_version_line(record, "")]
    lines += [
        f"  {key} unset" if value is DELETE else f"  {key} = {shown(value)}"
        for key, value in sorted(changes.items())
    ]
    return Outcome(_written(record), "\n".join(lines))


async def history(context: Context, args: argparse.Namespace) -> Outcome:
    """``config history SERVICE [--limit N]``."""
    env = _segment("environment", context.require_env())
    Schema(args.service)
    async with _store(context) as store:
        records = await store.history(env, args.service, args.limit)
    rows = [[str(r.version), moment(r.at_ms), r.who, r.why, _change_text(r)] for r in records]
    text = (
        table(["VERSION", "AT", "WHO", "WHY", "CHANGES"], rows)
        if rows
        else f"{args.service} in {env}: no changes recorded"
    )
    return Outcome(
        {"env": env, "service": args.service, "changes": [_record(r) for r in records]}, text
    )


async def rollback(context: Context, args: argparse.Namespace) -> Outcome:
    """``config rollback SERVICE VERSION --why WHY``."""
    env = _segment("environment", context.require_env())
    schema = Schema(args.service)
    who = operator_name(args.who)
    async with _store(context) as store:
        target = (await store.record(env, args.service, args.version)).after
        current, _ = await store.get(env, args.service)
        schema.check(current, changes_between(current, target))
        record = await store.rollback(
            env, args.service, args.version, who=who, why=args.why, validate=schema.check_map
        )
    return Outcome(
        _written(record, restored=args.version),
        _version_line(record, f"restored version {args.version} as ")
        + "".join(f"\n  {key} = {shown(v)}" for key, v in sorted(record.after.items())),
    )


def _diff_document(differences: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {key: {"from": src, "to": dst} for key, (src, dst) in sorted(differences.items())}


def _diff_table(src: str, dst: str, differences: Mapping[str, tuple[Any, Any]]) -> str:
    def cell(value: Any) -> str:
        return ABSENT if value is None else shown(value)

    rows = [[key, cell(a), cell(b)] for key, (a, b) in sorted(differences.items())]
    return table(["KEY", src, dst], rows)


def _envs(context: Context, args: argparse.Namespace) -> tuple[str, str]:
    source = _segment("environment", context.require_env(args.source))
    target = _segment("environment", args.target)
    if source == target:
        raise UsageError(f"--from and --to are both {source!r}")
    return source, target


async def diff(context: Context, args: argparse.Namespace) -> Outcome:
    """``config diff SERVICE --to ENV [--from ENV]``."""
    source, target = _envs(context, args)
    Schema(args.service)
    async with _store(context) as store:
        differences = await store.diff(source, target, args.service)
    text = (
        _diff_table(source, target, differences)
        if differences
        else f"{args.service}: {source} and {target} hold the same values"
    )
    document = {"service": args.service, "from": source, "to": target}
    return Outcome({**document, "differences": _diff_document(differences)}, text)


async def copy(context: Context, args: argparse.Namespace) -> Outcome:
    """``config copy SERVICE --to ENV [--from ENV] --why WHY [--yes]``."""
    source, target = _envs(context, args)
    schema = Schema(args.service)
    who = operator_name(args.who)
    document = {"service": args.service, "from": source, "to": target}
    async with _store(context) as store:
        differences = await store.diff(source, target, args.service)
        if not differences:
            return Outcome(
                {**document, "differences": {}, "version": None},
                f"{args.service}: {target} already holds {source}'s values; nothing to copy",
            )
        # The differences always go to stderr: with --json, stdout carries the document only.
        context.stderr.write(_diff_table(source, target, differences) + "\n")
        if not args.yes and not context.confirm(
            f"copy {len(differences)} key(s) of {args.service} from {source} to {target}?"
        ):
            raise CommandFailed("copy cancelled; nothing written")
        wanted, _ = await store.get(source, args.service)
        current, _ = await store.get(target, args.service)
        schema.check(current, changes_between(current, wanted))
        record = await store.copy(
            source, target, args.service, who=who, why=args.why, validate=schema.check_map
        )
    return Outcome(
        {**_written(record), **document, "differences": _diff_document(differences)},
        f"{args.service}: copied {len(differences)} key(s) from {source} to {target}, "
        f"version {record.version} in {target}",
    )


def _service_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "service", metavar="SERVICE", help="gateway or a service name (user, sms, ...)"
    )


def _write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--why", required=True, help="why the change is made (recorded)")
    parser.add_argument("--who", help="who makes it (recorded); default: your OS user")


def _env_pair(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="source", metavar="ENV", help="source environment (default: --env)"
    )
    parser.add_argument("--to", dest="target", metavar="ENV", required=True)


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``config get/set/diff/history/rollback/copy``."""
    group = command_group(subcommands, "config", "live settings in the configuration centre (etcd)")
    parser = leaf(group, "get", "Show a service's remote values and their version.", get, common)
    _service_argument(parser)
    parser.add_argument("keys", nargs="*", metavar="KEY", help="only these keys")
    parser.add_argument("--live", action="store_true", help="also list the keys that are live")

    parser = leaf(
        group,
        "set",
        "Change keys of a service, validated against its settings first.\n\n"
        "VALUE is read as JSON and taken as a plain string when it is not JSON:\n"
        "  webookctl --env prod config set gateway log_level=DEBUG --why 'incident 42'",
        set_values,
        common,
    )
    _service_argument(parser)
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--unset", action="append", metavar="KEY", help="remove a key (repeatable)")
    _write_options(parser)

    parser = leaf(group, "history", "List the recorded changes, newest first.", history, common)
    _service_argument(parser)
    parser.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    parser = leaf(
        group,
        "rollback",
        "Restore the values a service had at an earlier version (a new version).",
        rollback,
        common,
    )
    _service_argument(parser)
    parser.add_argument("version", type=int, metavar="VERSION")
    _write_options(parser)

    parser = leaf(group, "diff", "Compare a service's values in two environments.", diff, common)
    _service_argument(parser)
    _env_pair(parser)

    parser = leaf(
        group,
        "copy",
        "Copy a service's values from one environment to another: shows the\n"
        "differences first and asks before writing unless --yes.",
        copy,
        common,
    )
    _service_argument(parser)
    _env_pair(parser)
    _write_options(parser)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
