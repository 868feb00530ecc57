"""Which settings are live, where they live in etcd, and how a remote map is validated.

A setting is *live* when its field is declared with :func:`live_field`: its value may then
also come from etcd, under ``/webook/config/<environment>/<service>/<field name>`` (a JSON
value), and a running process applies a change without restarting. Every other setting is
restart-only: a value for it in etcd is refused by :func:`validate_changes` and ignored by
the processes. A ``SecretStr`` field can never be live (its value would sit in etcd and in
the processes' log lines): :func:`live_fields` refuses such a declaration.

Precedence of a live setting: defaults < settings file < environment < remote. The remote
values are laid over the process's *base* settings (already read from the first three) and
the whole model is validated again, so a remote value must pass every field and model
validator the settings class has.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_core import PydanticUndefined

KEY_ROOT: Final = "/webook/config"
HISTORY_ROOT: Final = "/webook/config-history"

_LIVE_MARK: Final = "live"
# One path segment: an environment or a service name.
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The key a model-level validator's complaint is filed under (it concerns several settings).
WHOLE_MODEL_KEY: Final = "*"

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Delete:
    """The type of :data:`DELETE`."""

    _instance: _Delete | None = None

    def __new__(cls) -> _Delete:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete()
"""A change that removes a key: the setting goes back to its environment or default value."""


class ConfigInvalid(ValueError):
    """Remote values that cannot be applied; ``errors`` says why, per key."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors: dict[str, str] = dict(errors)
        detail = "; ".join(f"{key}: {message}" for key, message in sorted(self.errors.items()))
        super().__init__(f"invalid configuration: {detail}")


def live_field(default: Any = PydanticUndefined, **field_kwargs: Any) -> Any:
    """A pydantic ``Field(default, **field_kwargs)`` marked live (see the module docstring)."""
    extra = field_kwargs.pop("json_schema_extra", None) or {}
    if not isinstance(extra, dict):
        raise TypeError("live_field takes json_schema_extra as a dict only")
    return Field(default, json_schema_extra={**extra, _LIVE_MARK: True}, **field_kwargs)


@functools.cache
def live_fields(settings_type: type[BaseModel]) -> frozenset[str]:
    """The names of ``settings_type``'s live fields.

    Raises :class:`TypeError` if one of them is a ``SecretStr``: secrets are restart-only.
    """
    names = set()
    for name, field in settings_type.model_fields.items():
        extra = field.json_schema_extra
        if not (isinstance(extra, dict) and extra.get(_LIVE_MARK)):
            continue
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in get_args(annotation):
            raise TypeError(
                f"{settings_type.__name__}.{name} is a secret and cannot be a live setting"
            )
        names.add(name)
    return frozenset(names)


def check_segment(kind: str, value: str) -> str:
    """``value`` if it can be one segment of a configuration key, else :class:`ValueError`."""
    if not _SEGMENT.fullmatch(value):
        raise ValueError(f"{kind} {value!r} must be letters, digits, '_', '.' or '-'")
    return value


def service_key_prefix(environment: str, service: str) -> str:
    """``/webook/config/<environment>/<service>/``: the keys of one service's settings."""
    environment = check_segment("environment", environment)
    return f"{KEY_ROOT}/{environment}/{check_segment('service', service)}/"


def history_key_prefix(environment: str, service: str) -> str:
    """``/webook/config-history/<environment>/<service>/``: one service's change records."""
    environment = check_segment("environment", environment)
    return f"{HISTORY_ROOT}/{environment}/{check_segment('service', service)}/"


def encode_value(value: Any) -> bytes:
    """The etcd value of a setting: its JSON text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()


def decode_value(raw: bytes) -> Any:
    """A setting's value from its etcd value; text that is not JSON stays a string, which
    the validation then judges like any other value."""
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_problem(settings_type: type[BaseModel], key: str) -> str | None:
    """Why ``key`` cannot be set remotely for ``settings_type``, or ``None`` if it can."""
    if key not in settings_type.model_fields:
        return "unknown setting"
    if key not in live_fields(settings_type):
        return "not a live setting: it needs a restart (set it in the environment or file)"
    return None


def overlay(settings_type: type[ModelT], base: BaseModel, remote: Mapping[str, Any]) -> ModelT:
    """``base`` with the live keys of ``remote`` laid over it, the whole model validated.

    Keys of ``remote`` that are not live settings are left out (see :func:`key_problem`).
    Raises :class:`ConfigInvalid` with the validation errors by key.
    """
    live = live_fields(settings_type)
    values = {name: getattr(base, name) for name in settings_type.model_fields}
    values.update({key: value for key, value in remote.items() if key in live})
    try:
        # model_validate, not the constructor: a settings class's constructor would read the
        # environment again; every field is given here, so only validation runs.
        return settings_type.model_validate(values)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            loc = error.get("loc") or ()
            key = str(loc[0]) if loc else WHOLE_MODEL_KEY
            message = str(error.get("msg", "invalid"))
            errors[key] = f"{errors[key]}; {message}" if key in errors else message
        raise ConfigInvalid(errors) from exc


def validate_changes(
    settings_type: type[BaseModel],
    base: BaseModel,
    remote: Mapping[str, Any],
    changes: Mapping[str, Any],
) -> dict[str, Any]:
    """The remote values after ``changes`` (a value, or :data:`DELETE`), validated.

    Every changed key must be a live setting of ``settings_type`` (unknown keys and
    restart-only ones are refused, the latter with a message saying they need a restart);
    the whole model is then rebuilt as a process would (``base`` < remote, i.e. defaults <
    file < environment < remote). Keys already in ``remote`` that are not live are kept as
    they are: processes ignore them. Raises :class:`ConfigInvalid`, with a message per key.
    """
    errors = {
        key: problem for key in changes if (problem := key_problem(settings_type, key)) is not None
    }
    if errors:
        raise ConfigInvalid(errors)
    after = dict(remote)
    for key, value in changes.items():
        if value is DELETE:
            after.pop(key, None)
        else:
            after[key] = value
    overlay(settings_type, base, after)
    return after
